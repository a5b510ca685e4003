import type { StoredMessage } from '../../src/store/types.js';

/** A stored message with plain fields, for tests that only care about ids and order. */
export const storedMessage = (id: number, over: Partial<StoredMessage> = {}): StoredMessage => ({
  id,
  sessionId: 1,
  userId: 'u',
  username: 'u',
  profilePic: null,
  isHost: false,
  message: `m${id}`,
  createdAt: 0,
  likes: 0,
  clientMsgId: null,
  ...over,
});
