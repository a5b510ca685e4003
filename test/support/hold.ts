import type { ChatStore, WriteBatch } from '../../src/store/types.js';

/**
 * Holds the store's group commits that `hold` picks (it sees every batch) until `release()`; `restore()` puts the
 * store's own `write` back. For tests of what happens while a commit is in flight.
 */
export function holdWrites(
  store: ChatStore,
  hold: (batch: WriteBatch) => boolean,
): { release: () => void; restore: () => void } {
  const write = store.write.bind(store);
  let release!: () => void;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  store.write = async (batch) => {
    if (hold(batch)) await gate;
    return write(batch);
  };
  return {
    release,
    restore: () => {
      store.write = write;
    },
  };
}
