import { requireElement } from './dom';

export interface LoginView {
  /** Shows the form, with `message` above it when there is something to explain. */
  show(message?: string): void;
  hide(): void;
}

export function createLoginView(onKey: (key: string) => void): LoginView {
  const section = requireElement('login', HTMLElement);
  const form = requireElement('login-form', HTMLFormElement);
  const input = requireElement('key-input', HTMLInputElement);
  const message = requireElement('login-message', HTMLParagraphElement);

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (key === '') return;
    input.value = '';
    onKey(key);
  });

  return {
    show(text) {
      message.textContent = text ?? '';
      message.hidden = text === undefined;
      section.hidden = false;
      input.focus();
    },
    hide() {
      section.hidden = true;
    },
  };
}
