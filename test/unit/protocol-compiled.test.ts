import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import {
  ChatMessageParser,
  ChatMessageSchema,
  ClientCommandParser,
  ClientCommandSchema,
  ServerEventParser,
  ServerEventSchema,
} from '../../src/protocol/messages.js';
import { BusEnvelopeSchema, parseEnvelope } from '../../src/realtime/bus.js';

// The hot paths check events and commands with compiled copies of the protocol's schemas (`z.compile`). They
// must answer exactly as the schemas do: the same verdict, the same output (fields, order, values), the same
// issues; and the output must be a fresh object, since the client library completes it in place.

const SEED = 20261126;

function sameAnswer(compiled: z.ZodType, plain: z.ZodType, input: unknown): void {
  const a = compiled.safeParse(input);
  const b = plain.safeParse(input);
  expect(a.success, JSON.stringify(input)).toBe(b.success);
  if (a.success && b.success) {
    // JSON keeps key order: the same fields in the same order, with the same values.
    expect(JSON.stringify(a.data)).toBe(JSON.stringify(b.data));
    if (typeof input === 'object' && input !== null) expect(a.data).not.toBe(input);
  } else {
    expect(JSON.stringify(a.error?.issues)).toBe(JSON.stringify(b.error?.issues));
  }
}

const id = fc.integer({ min: 1, max: 2 ** 40 });
const count = fc.nat({ max: 2 ** 31 });
const iso = fc.date({ noInvalidDate: true }).map((d) => d.toISOString());
const cmid = fc.stringMatching(/^[\x21-\x7e]{1,64}$/);
/** A chat message's fields that are always there, in the protocol's order. */
const MESSAGE_FIELDS = [
  'id',
  'session_id',
  'user_id',
  'username',
  'profile_pic',
  'is_winner',
  'is_host',
  'message',
  'created_at',
  'likes',
] as const;
const message = fc.record(
  {
    id,
    session_id: id,
    user_id: fc.string({ maxLength: 24 }),
    username: fc.string({ maxLength: 24 }),
    profile_pic: fc.option(fc.webUrl(), { nil: null }),
    is_winner: fc.boolean(),
    is_host: fc.boolean(),
    message: fc.string({ maxLength: 80 }),
    created_at: iso,
    likes: count,
    client_msg_id: cmid,
    liked_by_me: fc.boolean(),
  },
  {
    requiredKeys: [...MESSAGE_FIELDS],
  },
);
const session = fc.record({
  id,
  draw_time: iso,
  starts_at: iso,
  ends_at: iso,
  is_active: fc.boolean(),
  total_likes: count,
  viewer_count: count,
});
const validEvent = fc.oneof(
  fc.record({ type: fc.constant('new_message'), message }),
  fc.record({
    type: fc.constant('init'),
    session,
    you: fc.record({
      user_id: fc.string(),
      username: fc.string(),
      profile_pic: fc.constant(null),
      is_host: fc.boolean(),
      is_winner: fc.boolean(),
    }),
    viewer_count: count,
    total_likes: count,
    messages: fc.array(message, { maxLength: 4 }),
    epoch: fc.string(),
  }),
  fc.record({ type: fc.constant('session_like_update'), session_id: id, total_likes: count }),
  fc.record({ type: fc.constant('message_like_update'), message_id: id, likes: count }),
  fc.record({ type: fc.constant('viewer_count_update'), session_id: id, viewer_count: count }),
  fc.record({ type: fc.constant('message_deleted'), session_id: id, message_id: id }),
  fc.record({ type: fc.constant('winner_update'), session_id: id, user_ids: fc.array(fc.string()) }),
  fc.record({
    type: fc.constant('chat_closed'),
    session_id: id,
    reason: fc.constantFrom('window_ended', 'disabled'),
  }),
  fc.record({
    type: fc.constant('resync_required'),
    reason: fc.constantFrom('epoch_changed', 'too_far_behind', 'unknown_position'),
    epoch: fc.string(),
  }),
  fc.record({ type: fc.constant('pong'), server_time: iso }),
  fc.record(
    {
      type: fc.constant('error'),
      code: fc.string(),
      message: fc.string(),
      client_msg_id: cmid,
      retry_after_ms: count,
    },
    { requiredKeys: ['type', 'code', 'message'] },
  ),
);
const validCommand = fc.oneof(
  fc.record(
    { type: fc.constant('message'), message: fc.string(), client_msg_id: cmid },
    { requiredKeys: ['type', 'message'] },
  ),
  fc.record({ type: fc.constant('like') }),
  fc.record({ type: fc.constantFrom('like_message', 'unlike_message'), message_id: id }),
  fc.record({ type: fc.constant('auth'), token: fc.string({ maxLength: 9000 }) }),
  fc.record({ type: fc.constant('ping') }),
);

const storedMessage = fc.record({
  id,
  sessionId: id,
  userId: fc.string({ maxLength: 24 }),
  username: fc.string({ maxLength: 24 }),
  profilePic: fc.option(fc.webUrl(), { nil: null }),
  isHost: fc.boolean(),
  message: fc.string({ maxLength: 80 }),
  createdAt: fc.integer(),
  likes: count,
  clientMsgId: fc.option(cmid, { nil: null }),
});
const busEvent = fc.oneof(
  fc.record({
    kind: fc.constant('message'),
    sessionId: id,
    message: storedMessage,
    prevId: count,
    committedAt: fc.integer(),
  }),
  fc.record({ kind: fc.constant('session_likes'), sessionId: id, totalLikes: count, version: fc.integer() }),
  fc.record({
    kind: fc.constant('message_likes'),
    sessionId: id,
    messageId: id,
    likes: count,
    version: fc.integer(),
  }),
  fc.record({ kind: fc.constant('message_deleted'), sessionId: id, messageId: id }),
  fc.record({ kind: fc.constant('winners'), sessionId: id, userIds: fc.array(fc.string()) }),
  fc.record({ kind: fc.constant('presence'), sessionId: id }),
);

/** Anything a field could wrongly hold. */
const junk = fc.oneof(
  fc.anything({ maxDepth: 1 }),
  fc.constantFrom(0, -1, 1.5, Number.NaN, 2 ** 60, '', ' ', 'x'.repeat(65), 'a b', null, undefined, [], {}),
);

/** A valid value, or one with a field (at the top or one level down) replaced, removed or added. */
function mutated(valid: fc.Arbitrary<Record<string, unknown>>): fc.Arbitrary<unknown> {
  return fc.oneof(
    valid,
    fc
      .tuple(valid, fc.nat(), fc.nat(), junk, fc.constantFrom('replace', 'remove', 'add'))
      .map(([v, i, j, value, how]) => {
        const out = structuredClone(v);
        let target: Record<string, unknown> = out;
        const nested = Object.entries(out).filter(
          ([, x]) => typeof x === 'object' && x !== null && !Array.isArray(x),
        );
        if (j % 3 === 0 && nested.length > 0)
          target = nested[j % nested.length]![1] as Record<string, unknown>;
        const keys = Object.keys(target);
        const key = keys[i % keys.length] ?? 'type';
        if (how === 'replace') target[key] = value;
        else if (how === 'remove') delete target[key];
        else target[`extra_${i % 3}`] = value;
        return out;
      }),
    junk,
  );
}

describe('the compiled protocol schemas', () => {
  it('are compiled (Node allows generated code), not the plain schemas handed back', () => {
    expect(ServerEventParser).not.toBe(ServerEventSchema);
    expect(ClientCommandParser).not.toBe(ClientCommandSchema);
    expect(ChatMessageParser).not.toBe(ChatMessageSchema);
  });

  it(`answer every server event as the schema does (seed ${SEED})`, () => {
    fc.assert(
      fc.property(mutated(validEvent), (input) => sameAnswer(ServerEventParser, ServerEventSchema, input)),
      { numRuns: 3000, seed: SEED },
    );
  });

  it(`answer every client command as the schema does (seed ${SEED})`, () => {
    fc.assert(
      fc.property(mutated(validCommand), (input) =>
        sameAnswer(ClientCommandParser, ClientCommandSchema, input),
      ),
      { numRuns: 3000, seed: SEED },
    );
  });

  it(`answer every chat message as the schema does (seed ${SEED})`, () => {
    fc.assert(
      fc.property(mutated(message), (input) => sameAnswer(ChatMessageParser, ChatMessageSchema, input)),
      { numRuns: 2000, seed: SEED },
    );
  });

  it(`parse every inter-node envelope as the bus schema does (seed ${SEED})`, () => {
    const envelope = fc.record({
      v: fc.constant(1),
      node: fc.string({ minLength: 1, maxLength: 20 }),
      events: fc.array(busEvent, { maxLength: 3 }),
    });
    const envelopeOrEvent = fc.oneof(
      mutated(envelope),
      fc.record({
        v: fc.constant(1),
        node: fc.constant('n'),
        events: fc.array(mutated(busEvent), { minLength: 1, maxLength: 2 }),
      }),
    );
    fc.assert(
      fc.property(envelopeOrEvent, (input) => {
        const json = JSON.stringify(input) ?? 'null';
        const got = parseEnvelope(json);
        const want = BusEnvelopeSchema.safeParse(JSON.parse(json));
        expect(got.ok, json).toBe(want.success);
        if (got.ok && want.success) expect(JSON.stringify(got.envelope)).toBe(JSON.stringify(want.data));
      }),
      { numRuns: 2000, seed: SEED },
    );
  });

  it('give the client library a message object of its own, with only the protocol fields', () => {
    const input = {
      type: 'new_message',
      message: {
        id: 7,
        session_id: 1,
        user_id: 'u',
        username: 'Ann',
        profile_pic: null,
        is_winner: false,
        is_host: true,
        message: 'hi',
        created_at: '2026-11-26T20:00:00.000Z',
        likes: 0,
        client_msg_id: 'c-1',
        injected: '<b>',
      },
      extra: 1,
    };
    const out = ServerEventParser.parse(input);
    expect(out.type).toBe('new_message');
    if (out.type !== 'new_message') return;
    expect(out.message).not.toBe(input.message);
    expect(Object.keys(out)).toEqual(['type', 'message']);
    expect(Object.keys(out.message)).toEqual([...MESSAGE_FIELDS, 'client_msg_id']);
  });
});
