import { describe, expect, it } from 'vitest';
import { createKeyStore, OPERATOR_KEY_ITEM } from '../../src/auth/keyStore';

function memoryStorage() {
  const items = new Map<string, string>();
  return {
    items,
    getItem: (name: string) => items.get(name) ?? null,
    setItem: (name: string, value: string) => void items.set(name, value),
    removeItem: (name: string) => void items.delete(name),
  };
}

describe('keyStore', () => {
  it('saves, reads and forgets the key', () => {
    const storage = memoryStorage();
    const keys = createKeyStore(storage);
    expect(keys.read()).toBeNull();
    keys.save('  op-key \n');
    expect(storage.items.get(OPERATOR_KEY_ITEM)).toBe('op-key');
    expect(keys.read()).toBe('op-key');
    keys.forget();
    expect(keys.read()).toBeNull();
  });

  it('treats a blank stored key as no key', () => {
    const storage = memoryStorage();
    storage.items.set(OPERATOR_KEY_ITEM, '   ');
    expect(createKeyStore(storage).read()).toBeNull();
  });
});
