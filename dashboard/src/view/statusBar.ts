import { requireElement } from './dom';

/** The banner for failed polls and the "updated" time in the header. */
export interface StatusBar {
  showProblem(message: string): void;
  clearProblem(): void;
  markUpdated(at: Date): void;
  setSignedIn(signedIn: boolean): void;
}

export function createStatusBar(onChangeKey: () => void): StatusBar {
  const banner = requireElement('banner', HTMLDivElement);
  const updated = requireElement('updated', HTMLElement);
  const changeKey = requireElement('change-key', HTMLButtonElement);
  changeKey.addEventListener('click', onChangeKey);

  return {
    showProblem(message) {
      banner.textContent = message;
      banner.hidden = false;
    },
    clearProblem() {
      banner.hidden = true;
      banner.textContent = '';
    },
    markUpdated(at) {
      updated.textContent = `Updated ${at.toLocaleTimeString('en-GB')}`;
    },
    setSignedIn(signedIn) {
      changeKey.hidden = !signedIn;
      if (!signedIn) updated.textContent = '';
    },
  };
}
