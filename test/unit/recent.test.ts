import { describe, expect, it } from 'vitest';
import { newerThan } from '../../src/chat/chat-service.js';
import { storedMessage } from '../support/messages.js';

const message = (id: number) => storedMessage(id, { createdAt: id });

describe('resume from the recent messages (src/chat/chat-service.ts newerThan)', () => {
  it('returns the messages newer than an id, as a filter would, ids with gaps (deleted messages) included', () => {
    const recent = [3, 4, 7, 8, 9, 15, 16, 40].map(message);
    for (let since = 0; since <= 42; since++) {
      expect(newerThan(recent, since), `since ${since}`).toEqual(recent.filter((m) => m.id > since));
    }
    expect(newerThan([], 5)).toEqual([]);
  });

  it('is a copy: the recent list it came from is not shared with the caller', () => {
    const recent = [1, 2, 3].map(message);
    const after = newerThan(recent, 0);
    after.pop();
    expect(recent).toHaveLength(3);
  });
});
