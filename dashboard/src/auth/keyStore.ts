/**
 * Where the operator key lives between page loads. sessionStorage rather than
 * localStorage: the key is forgotten when the tab closes, and other tabs never see it.
 */
export const OPERATOR_KEY_ITEM = 'para.operatorKey';

export interface KeyStore {
  read(): string | null;
  save(key: string): void;
  forget(): void;
}

export function createKeyStore(storage: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>): KeyStore {
  return {
    read() {
      const key = storage.getItem(OPERATOR_KEY_ITEM);
      return key === null || key.trim() === '' ? null : key;
    },
    save(key) {
      storage.setItem(OPERATOR_KEY_ITEM, key.trim());
    },
    forget() {
      storage.removeItem(OPERATOR_KEY_ITEM);
    },
  };
}
