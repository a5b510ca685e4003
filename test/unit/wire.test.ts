import { describe, expect, it } from 'vitest';
import { initEventJson, toWireMessage, wireMessagesJson } from '../../src/chat/wire.js';
import { InitEvent } from '../../src/protocol/messages.js';
import type { StoredMessage } from '../../src/store/types.js';

const stored = (id: number, over: Partial<StoredMessage> = {}): StoredMessage => ({
  id,
  sessionId: 7,
  userId: `u${id % 3}`,
  username: id % 2 ? 'Zoë "quoted" \u2028' : 'Ann',
  profilePic: id % 2 ? null : 'https://example.com/a.png',
  isHost: id === 2,
  message: `message ${id} ✨\n<b>`,
  clientMsgId: id % 2 ? `c-${id}` : null,
  likes: 0,
  createdAt: Date.UTC(2026, 10, 26, 10, 0, id),
  ...over,
});

/** What the messages of `init` were before: each one built and serialised on its own for every socket. */
const plain = (messages: StoredMessage[], winners: Set<string>, liked: Set<number>) =>
  JSON.stringify(messages.map((m) => toWireMessage(m, winners, liked.has(m.id))));

describe('init on the wire (src/chat/wire.ts)', () => {
  it("created_at is the store's text when it has one, else the message's time formatted", () => {
    const from = stored(1);
    expect(toWireMessage(from, new Set()).created_at).toBe('2026-11-26T10:00:01.000Z');
    // The store's text (the same instant, written the same way) is taken as it is, not formatted again: a text
    // that is not the formatted time shows which one the wire used.
    const read = stored(1, { createdAtText: 'the store text' });
    expect(toWireMessage(read, new Set()).created_at).toBe('the store text');
  });

  it('the messages of init are the JSON of their wire form, following likes, the winner badge and liked_by_me', () => {
    const messages = [1, 2, 3, 4, 5].map((id) => stored(id));
    const winners = new Set<string>();
    const none = new Set<number>();
    expect(wireMessagesJson(messages, winners, none)).toBe(plain(messages, winners, none));
    // Served again from what was kept: the same text.
    expect(wireMessagesJson(messages, winners, none)).toBe(plain(messages, winners, none));
    // A like lands on message 3, u1 becomes a winner, and this viewer liked message 3.
    messages[2]!.likes = 4;
    winners.add('u1');
    const liked = new Set([3]);
    expect(wireMessagesJson(messages, winners, liked)).toBe(plain(messages, winners, liked));
    expect(wireMessagesJson(messages, winners, none)).toBe(plain(messages, winners, none));
    winners.clear();
    expect(wireMessagesJson(messages, winners, none)).toBe(plain(messages, winners, none));
    expect(wireMessagesJson([], winners, none)).toBe('[]');
  });

  it('initEventJson is the init event as JSON.stringify writes it, and the protocol schema accepts it', () => {
    const messages = [1, 2, 3].map((id) => stored(id));
    const winners = new Set(['u2']);
    const event = {
      type: 'init' as const,
      session: {
        id: 7,
        draw_time: '2026-11-26T11:00:00.000Z',
        starts_at: '2026-11-26T10:00:00.000Z',
        ends_at: '2026-11-26T12:00:00.000Z',
        is_active: true,
        total_likes: 12,
        viewer_count: 3,
      },
      you: { user_id: 'u1', username: 'Zoë', profile_pic: null, is_host: false, is_winner: false },
      viewer_count: 3,
      total_likes: 12,
      epoch: 'e-1',
    };
    const json = initEventJson(event, wireMessagesJson(messages, winners, new Set([2])));
    const expected = { ...event, messages: messages.map((m) => toWireMessage(m, winners, m.id === 2)) };
    expect(json).toBe(
      JSON.stringify({
        type: expected.type,
        session: expected.session,
        you: expected.you,
        viewer_count: expected.viewer_count,
        total_likes: expected.total_likes,
        messages: expected.messages,
        epoch: expected.epoch,
      }),
    );
    expect(InitEvent.parse(JSON.parse(json))).toEqual(expected);
  });
});
