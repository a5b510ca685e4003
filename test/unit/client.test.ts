import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  backoffDelay,
  ChatClient,
  type ChatClientOptions,
  DEFAULT_BACKOFF,
  type WebSocketConstructor,
  type WebSocketLike,
} from '../../src/client/index.js';
import type { ChatMessage, StatusResponse } from '../../src/protocol/index.js';

// The client library against a fake socket, fake fetch and fake timers: every case is deterministic and
// nothing touches the network.

/** Timers that run only when the test moves time. */
class FakeTime {
  now = Date.parse('2026-03-13T19:30:00Z');
  #next = 1;
  readonly timers = new Map<number, { at: number; fn: () => void }>();

  setTimeout = (fn: () => void, ms: number): unknown => {
    const id = this.#next++;
    this.timers.set(id, { at: this.now + ms, fn });
    return id;
  };
  clearTimeout = (handle: unknown): void => {
    this.timers.delete(handle as number);
  };

  /** Moves time forward, running due timers in order (and the promises they start). */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    for (;;) {
      await flush();
      const due = [...this.timers.entries()]
        .filter(([, t]) => t.at <= end)
        .sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.now = Math.max(this.now, due[1].at);
      due[1].fn();
    }
    this.now = end;
    await flush();
  }
}

/** The client's quiet time before it reads the counts again after a refusal (LIKE_RECHECK_DELAY_MS). */
const LIKE_RECHECK_MS = 500;

async function flush() {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

class FakeSocket implements WebSocketLike {
  static all: FakeSocket[] = [];
  readyState = 0;
  readonly sent: any[] = [];
  onopen: ((event: any) => void) | null = null;
  onmessage: ((event: any) => void) | null = null;
  onclose: ((event: any) => void) | null = null;
  onerror: ((event: any) => void) | null = null;
  closedByClient: number | undefined;

  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }
  get query() {
    return new URL(this.url).searchParams;
  }
  send(data: string) {
    this.sent.push(JSON.parse(data));
  }
  close(code = 1000) {
    this.closedByClient = code;
    this.readyState = 3;
  }
  // server side
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  receive(event: unknown) {
    this.onmessage?.({ data: JSON.stringify(event) });
  }
  drop(code = 1006, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  sentOf(type: string) {
    return this.sent.filter((f) => f.type === type);
  }
}

function jwt(claims: Record<string, unknown>) {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'none' })}.${part(claims)}.sig`;
}

const SESSION = {
  id: 7,
  draw_time: '2026-03-13T20:00:00.000Z',
  starts_at: '2026-03-13T19:00:00.000Z',
  ends_at: '2026-03-13T21:00:00.000Z',
  is_active: true,
  total_likes: 3,
  viewer_count: 1,
};
const YOU = { user_id: 'u-me', username: 'me', profile_pic: null, is_host: false, is_winner: false };

function status(over: Partial<StatusResponse> = {}): StatusResponse {
  return {
    enabled: true,
    is_active: true,
    phase: 'pre_draw',
    server_time: '2026-03-13T19:30:00.000Z',
    next_draw_time: SESSION.draw_time,
    opens_at: SESSION.starts_at,
    closes_at: SESSION.ends_at,
    session: SESSION,
    settings: { max_messages_per_minute: 10, history_limit: 100, max_message_length: 500 },
    ...over,
  };
}

function msg(id: number, over: Partial<ChatMessage> = {}): ChatMessage {
  return {
    id,
    session_id: SESSION.id,
    user_id: 'u-other',
    username: 'other',
    profile_pic: null,
    is_winner: false,
    is_host: false,
    message: `m${id}`,
    created_at: '2026-03-13T19:30:00.000Z',
    likes: 0,
    ...over,
  };
}

function init(messages: ChatMessage[], over: Record<string, unknown> = {}) {
  return {
    type: 'init',
    session: SESSION,
    you: YOU,
    viewer_count: 2,
    total_likes: 3,
    messages,
    epoch: 'epoch-1',
    ...over,
  };
}

function setup(options: Partial<ChatClientOptions> & { statuses?: StatusResponse[] } = {}) {
  FakeSocket.all = [];
  const time = new FakeTime();
  const statuses = options.statuses ?? [status()];
  const fetches: string[] = [];
  const tokens: string[] = [];
  let tokenNo = 0;
  const client = new ChatClient({
    baseUrl: 'http://chat.test/',
    getToken: () => {
      const token = `token-${++tokenNo}`;
      tokens.push(token);
      return token;
    },
    WebSocket: FakeSocket,
    fetch: async (url) => {
      fetches.push(url);
      const path = new URL(url).pathname;
      const body =
        path === '/live-chat/status'
          ? statuses.length > 1
            ? statuses.shift()
            : statuses[0]
          : { session_id: SESSION.id, messages: [], has_more: false };
      return { ok: true, status: 200, json: async () => body };
    },
    random: () => 0,
    setTimeout: time.setTimeout,
    clearTimeout: time.clearTimeout,
    now: () => time.now,
    heartbeatMs: 0,
    ...options,
  });
  const socket = () => FakeSocket.all.at(-1)!;
  return { client, time, fetches, tokens, socket, snap: () => client.getSnapshot() };
}

/** Starts the client and opens its first socket with `init`. */
async function connected(messages: ChatMessage[] = [], options: Parameters<typeof setup>[0] = {}) {
  const t = setup(options);
  t.client.start();
  await flush();
  t.socket().open();
  t.socket().receive(init(messages));
  return t;
}

describe('ChatClient: connecting and the message list', () => {
  it('[SPEC §5] finds the active session from status and connects with the token, batch on, no since', async () => {
    const { client, socket, snap, fetches } = setup();
    expect(snap().state).toBe('idle');
    client.start();
    expect(snap().state).toBe('connecting');
    await flush();
    expect(fetches).toEqual(['http://chat.test/live-chat/status']);
    const url = new URL(socket().url);
    expect(url.origin + url.pathname).toBe('ws://chat.test/live-chat/ws/7');
    expect(url.searchParams.get('token')).toBe('token-1');
    expect(url.searchParams.get('batch')).toBe('1');
    expect(url.searchParams.has('since')).toBe(false);
    socket().open();
    socket().receive(init([msg(1), msg(2)]));
    expect(snap()).toMatchObject({ state: 'open', viewerCount: 2, totalLikes: 3, you: YOU });
    expect(snap().messages.map((m) => m.id)).toEqual([1, 2]);
    expect(snap().messages[0]!.liked_by_me).toBe(false);
  });

  it('keeps messages in id order without duplicates, and applies counts, deletions and winners', async () => {
    const { socket, snap } = await connected([msg(1), msg(3)]);
    socket().receive({ type: 'new_message', message: msg(4) });
    socket().receive({ type: 'new_message', message: msg(2) });
    socket().receive({ type: 'new_message', message: msg(3, { message: 'dup' }) });
    expect(snap().messages.map((m) => [m.id, m.message])).toEqual([
      [1, 'm1'],
      [2, 'm2'],
      [3, 'm3'],
      [4, 'm4'],
    ]);
    socket().receive({ type: 'message_like_update', message_id: 2, likes: 5 });
    socket().receive({ type: 'viewer_count_update', session_id: 7, viewer_count: 9 });
    socket().receive({ type: 'session_like_update', session_id: 7, total_likes: 42 });
    socket().receive({ type: 'message_deleted', session_id: 7, message_id: 1 });
    socket().receive({ type: 'winner_update', session_id: 7, user_ids: ['u-other'] });
    const s = snap();
    expect(s.messages.map((m) => m.id)).toEqual([2, 3, 4]);
    expect(s.messages[0]).toMatchObject({ likes: 5, is_winner: true });
    expect(s.messages.every((m) => m.is_winner)).toBe(true);
    expect(s).toMatchObject({ viewerCount: 9, totalLikes: 42 });
  });

  it('handles batch array frames with one snapshot, and ignores (and counts) events that fail the schema', async () => {
    const { socket, snap, client } = await connected();
    let renders = 0;
    client.subscribe(() => renders++);
    socket().receive([
      { type: 'new_message', message: msg(1) },
      { type: 'new_message', message: msg(2) },
      { type: 'viewer_count_update', session_id: 7, viewer_count: 4 },
      { type: 'new_message', message: { id: 'x' } },
      { type: 'no_such_event' },
    ]);
    expect(renders).toBe(1);
    expect(snap().messages.map((m) => m.id)).toEqual([1, 2]);
    expect(snap().viewerCount).toBe(4);
    expect(snap().invalidEvents).toBe(2);
    socket().onmessage?.({ data: 'not json' });
    expect(snap().invalidEvents).toBe(3);
  });

  it('keeps at most maxMessages (the oldest go) and never changes a published list', async () => {
    const { socket, snap } = await connected([msg(1), msg(2)], { maxMessages: 3 });
    const before = snap().messages;
    socket().receive([3, 4, 5].map((id) => ({ type: 'new_message', message: msg(id) })));
    expect(snap().messages.map((m) => m.id)).toEqual([3, 4, 5]);
    expect(before.map((m) => m.id)).toEqual([1, 2]);
  });

  it('snapshots are immutable: a change makes a new object, no change keeps the old one', async () => {
    const { socket, snap } = await connected([msg(1)]);
    const before = snap();
    socket().receive({ type: 'pong', server_time: '2026-03-13T19:30:00.000Z' });
    expect(snap()).toBe(before);
    socket().receive({ type: 'new_message', message: msg(2) });
    expect(snap()).not.toBe(before);
    expect(before.messages.map((m) => m.id)).toEqual([1]);
    expect(Object.isFrozen(snap())).toBe(true);
  });
});

describe('ChatClient: reconnect and resume', () => {
  it('[SPEC §6] resumes with since = the last id; the init appends and drops duplicates', async () => {
    const { socket, snap, time } = await connected([msg(1), msg(2)]);
    socket().receive({ type: 'new_message', message: msg(3) });
    const first = socket();
    first.drop(1001, 'server shutting down');
    expect(snap().state).toBe('reconnecting');
    expect(snap().messages).toHaveLength(3);
    await time.advance(500);
    const second = socket();
    expect(second).not.toBe(first);
    expect(second.query.get('since')).toBe('3');
    expect(second.query.get('epoch')).toBe('epoch-1');
    second.open();
    // A server may repeat what we have (it must not, but the list must hold anyway).
    second.receive(init([msg(3), msg(4), msg(5)]));
    expect(snap().state).toBe('open');
    expect(snap().messages.map((m) => m.id)).toEqual([1, 2, 3, 4, 5]);
    second.receive({ type: 'new_message', message: msg(4) });
    expect(snap().messages.map((m) => m.id)).toEqual([1, 2, 3, 4, 5]);
  });

  it('resync_required (another history, or too far behind): the next init replaces the list', async () => {
    const { client, socket, snap, time } = await connected([msg(1), msg(2), msg(3)]);
    const lost = client.send('in flight');
    const cmid = socket().sentOf('message')[0].client_msg_id;
    socket().drop(1006);
    await time.advance(500);
    socket().open();
    socket().receive([
      { type: 'resync_required', reason: 'epoch_changed', epoch: 'epoch-2' },
      init([msg(1, { message: 'new history' }), msg(2, { user_id: 'u-me', client_msg_id: cmid })], {
        epoch: 'epoch-2',
      }),
    ]);
    expect(snap().messages.map((m) => m.message)).toEqual(['new history', 'm2']);
    await expect(lost).resolves.toMatchObject({ ok: true, message: { id: 2 } });
    socket().drop(1006);
    await time.advance(500);
    expect(socket().query.get('since')).toBe('2');
    expect(socket().query.get('epoch')).toBe('epoch-2');
  });

  it('backs off exponentially with jitter, capped at maxMs, and starts over after a successful init', async () => {
    const random = { value: 0 };
    const { client, socket, snap, time } = setup({ random: () => random.value });
    client.start();
    await flush();
    socket().open();
    socket().receive(init([]));
    const delays: number[] = [];
    for (let i = 0; i < 8; i++) {
      socket().drop(1006);
      delays.push(snap().reconnectAt! - time.now);
      await time.advance(delays.at(-1)!);
    }
    expect(delays).toEqual([500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
    // Jitter takes up to half off.
    random.value = 0.999;
    socket().drop(1006);
    const jittered = snap().reconnectAt! - time.now;
    expect(jittered).toBeGreaterThanOrEqual(7500);
    expect(jittered).toBeLessThan(15000);
    await time.advance(jittered);
    socket().open();
    socket().receive(init([]));
    expect(snap().attempt).toBe(0);
    random.value = 0;
    socket().drop(1006);
    expect(snap().reconnectAt! - time.now).toBe(500);
  });

  it('backoffDelay: grows by factor, caps, and jitter only shortens', () => {
    const o = { ...DEFAULT_BACKOFF };
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, o, () => 0))).toEqual([
      500, 1000, 2000, 4000, 8000, 15000, 15000,
    ]);
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(3, o, Math.random);
      expect(d).toBeGreaterThanOrEqual(1000);
      expect(d).toBeLessThanOrEqual(2000);
    }
  });

  it('[SPEC §5] close 4401 gets a fresh token from getToken and reconnects with it', async () => {
    const { socket, tokens, time } = await connected([msg(1)]);
    expect(tokens).toEqual(['token-1']);
    socket().drop(4401, 'token expired');
    await time.advance(500);
    expect(tokens).toEqual(['token-1', 'token-2']);
    expect(socket().query.get('token')).toBe('token-2');
    expect(socket().query.get('since')).toBe('1');
  });

  it('[SPEC §3] close 4409 goes to closed, keeps the messages, and reconnects when the next window opens', async () => {
    const next = status({
      is_active: false,
      phase: 'closed',
      server_time: '2026-03-13T21:00:01.000Z',
      opens_at: '2026-03-13T22:00:00.000Z',
      closes_at: '2026-03-14T00:00:00.000Z',
      next_draw_time: '2026-03-13T23:00:00.000Z',
      session: null,
    });
    const { socket, snap, time, fetches } = await connected([msg(1), msg(2)], {
      statuses: [status(), next],
    });
    socket().receive({ type: 'chat_closed', session_id: 7, reason: 'window_ended' });
    expect(snap().state).toBe('closed');
    expect(snap().closed?.reason).toBe('window_ended');
    socket().drop(4409, 'chat not active');
    await time.advance(0);
    expect(fetches.filter((u) => u.endsWith('/status'))).toHaveLength(2);
    expect(snap()).toMatchObject({
      state: 'closed',
      closed: { reason: 'window_ended', opensAt: '2026-03-13T22:00:00.000Z' },
    });
    expect(snap().messages.map((m) => m.id)).toEqual([1, 2]);
    const sockets = FakeSocket.all.length;
    // Nothing happens before the opening…
    await time.advance(59 * 60_000);
    expect(FakeSocket.all.length).toBe(sockets);
    expect(fetches.filter((u) => u.endsWith('/status'))).toHaveLength(2);
    // …and at the opening the client reads status again (the fake still says closed, so it waits again).
    await time.advance(61_000);
    expect(fetches.filter((u) => u.endsWith('/status')).length).toBeGreaterThan(2);
  });

  it('a new session at the next opening replaces the old messages', async () => {
    const closed = status({
      is_active: false,
      phase: 'closed',
      session: null,
      opens_at: '2026-03-13T19:30:05.000Z',
    });
    const nextSession = { ...SESSION, id: 8 };
    const { socket, snap, time } = await connected([msg(1)], {
      statuses: [status(), closed, status({ session: nextSession })],
    });
    socket().drop(4409);
    await time.advance(0);
    expect(snap().state).toBe('closed');
    await time.advance(7_000);
    expect(new URL(socket().url).pathname).toBe('/live-chat/ws/8');
    expect(socket().query.has('since')).toBe(false);
    socket().open();
    socket().receive(init([msg(1, { session_id: 8, message: 'fresh' })], { session: nextSession }));
    expect(snap().messages.map((m) => m.message)).toEqual(['fresh']);
    expect(snap().state).toBe('open');
  });

  it('close 4404 reads status again for the current session', async () => {
    const { socket, time, fetches } = await connected([], {
      statuses: [status(), status({ session: { ...SESSION, id: 9 } })],
    });
    socket().drop(4404);
    await time.advance(500);
    expect(fetches.filter((u) => u.endsWith('/status'))).toHaveLength(2);
    expect(new URL(socket().url).pathname).toBe('/live-chat/ws/9');
  });

  it('close 4429 (too many connections) waits longer than a plain drop, and says why until a join succeeds', async () => {
    const { socket, snap, time } = await connected();
    socket().drop(4429, 'too many connections');
    expect(snap().state).toBe('reconnecting');
    expect(snap().reconnectAt! - time.now).toBe(2000);
    expect(snap().error?.code).toBe('too_many_connections');
    await time.advance(2000);
    socket().open();
    socket().receive(init([]));
    expect(snap().error).toBeNull();
  });

  it('[SPEC §5] a 4401 for a token getToken hands out again: getToken is told which was refused; the client keeps trying and says why; a new token clears it', async () => {
    FakeSocket.all = [];
    const asked: Array<string | null> = [];
    const handedOut = ['stuck', 'stuck', 'renewed'];
    const { client, socket, snap, time } = setup({
      getToken: ({ refused }) => {
        asked.push(refused);
        return handedOut.shift() ?? 'renewed';
      },
    });
    client.start();
    await flush();
    socket().open();
    socket().receive(init([]));
    socket().drop(4401, 'token refused');
    await time.advance(500);
    expect(asked).toEqual([null, 'stuck']);
    expect(socket().query.get('token')).toBe('stuck');
    expect(snap().error?.code).toBe('unauthorized');
    socket().drop(4401, 'token refused');
    await time.advance(2000);
    expect(asked).toEqual([null, 'stuck', 'stuck']);
    expect(socket().query.get('token')).toBe('renewed');
    socket().open();
    socket().receive(init([]));
    expect(snap().error).toBeNull();
    expect(snap().state).toBe('open');
  });

  it('close 4403 stops for good with an error', async () => {
    const { socket, snap, time } = await connected();
    socket().drop(4403, 'forbidden');
    await time.advance(60_000);
    expect(snap().state).toBe('stopped');
    expect(snap().error?.code).toBe('forbidden');
    expect(FakeSocket.all).toHaveLength(1);
  });

  it('a message waiting for the connection when the client stops for good (4403) fails with that reason instead of waiting for ever', async () => {
    const { client, socket, snap, time } = await connected();
    socket().drop(1006, '');
    const sent = client.send('typed while away');
    expect(snap().pending.map((p) => p.status)).toEqual(['pending']);
    await time.advance(30_000);
    socket().open();
    socket().drop(4403, 'banned from this draw');
    await time.advance(1_000);
    expect(snap().state).toBe('stopped');
    const result = await sent;
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error.code).toBe('forbidden');
    expect(snap().pending.map((p) => p.status)).toEqual(['failed']);
  });

  it('retries the first connection while the server is unreachable, as `connecting`', async () => {
    const time = new FakeTime();
    let up = false;
    FakeSocket.all = [];
    const client = new ChatClient({
      baseUrl: 'https://chat.test',
      getToken: () => 't',
      WebSocket: FakeSocket,
      fetch: async () => {
        if (!up) throw new TypeError('fetch failed');
        return { ok: true, status: 200, json: async () => status() };
      },
      random: () => 0,
      setTimeout: time.setTimeout,
      clearTimeout: time.clearTimeout,
      now: () => time.now,
      heartbeatMs: 0,
    });
    client.start();
    await time.advance(0);
    expect(client.getSnapshot()).toMatchObject({ state: 'connecting', attempt: 1 });
    up = true;
    await time.advance(500);
    expect(FakeSocket.all).toHaveLength(1);
    expect(FakeSocket.all[0]!.url.startsWith('wss://chat.test/live-chat/ws/7?')).toBe(true);
  });
});

describe('ChatClient: optimistic sending', () => {
  it('[SPEC §6] shows a pending message, then replaces it with the stored one', async () => {
    const { client, socket, snap } = await connected([msg(1)]);
    const result = client.send('  hello  ');
    expect(snap().pending).toMatchObject([{ message: 'hello', status: 'pending' }]);
    const frame = socket().sentOf('message')[0];
    expect(frame).toMatchObject({ type: 'message', message: 'hello' });
    expect(frame.client_msg_id).toMatch(/^[\x21-\x7e]{1,64}$/);
    socket().receive({
      type: 'new_message',
      message: msg(2, { user_id: 'u-me', message: 'hello', client_msg_id: frame.client_msg_id }),
    });
    expect(snap().pending).toEqual([]);
    expect(snap().messages.map((m) => m.message)).toEqual(['m1', 'hello']);
    await expect(result).resolves.toMatchObject({ ok: true, message: { id: 2 } });
  });

  it('a message sent while the connection is down goes out after the resume, and is confirmed once', async () => {
    const { client, socket, snap, time } = await connected([msg(1)]);
    const inFlight = client.send('sent before the drop');
    const cmidA = socket().sentOf('message')[0].client_msg_id;
    socket().drop(1006);
    const queued = client.send('sent while down');
    expect(snap().pending.map((p) => p.status)).toEqual(['pending', 'pending']);
    await time.advance(500);
    const second = socket();
    expect(second.sent).toEqual([]);
    second.open();
    // The first one was stored before the drop: the resume brings it, so only the second is sent again.
    second.receive(
      init([msg(2, { user_id: 'u-me', message: 'sent before the drop', client_msg_id: cmidA })]),
    );
    expect(snap().pending.map((p) => p.message)).toEqual(['sent while down']);
    const resent = second.sentOf('message');
    expect(resent).toHaveLength(1);
    expect(resent[0].message).toBe('sent while down');
    second.receive({
      type: 'new_message',
      message: msg(3, {
        user_id: 'u-me',
        message: 'sent while down',
        client_msg_id: resent[0].client_msg_id,
      }),
    });
    // The server answers a repeated client_msg_id with the same stored message: still once.
    second.receive({
      type: 'new_message',
      message: msg(3, {
        user_id: 'u-me',
        message: 'sent while down',
        client_msg_id: resent[0].client_msg_id,
      }),
    });
    expect(snap().messages.map((m) => m.id)).toEqual([1, 2, 3]);
    expect(snap().pending).toEqual([]);
    await expect(inFlight).resolves.toMatchObject({ ok: true, message: { id: 2 } });
    await expect(queued).resolves.toMatchObject({ ok: true, message: { id: 3 } });
  });

  it('an unconfirmed message is sent again with the same client_msg_id after a reconnect', async () => {
    const { client, socket, time } = await connected([]);
    void client.send('lost in flight');
    const cmid = socket().sentOf('message')[0].client_msg_id;
    socket().drop(1006);
    await time.advance(500);
    socket().open();
    socket().receive(init([]));
    expect(socket().sentOf('message')).toEqual([
      { type: 'message', message: 'lost in flight', client_msg_id: cmid },
    ]);
  });

  it('[SPEC §6] a rate_limited error marks the message failed with retry_after_ms; retry sends it again', async () => {
    const { client, socket, snap, time } = await connected([]);
    const result = client.send('too fast');
    const cmid = socket().sentOf('message')[0].client_msg_id;
    socket().receive({
      type: 'error',
      code: 'rate_limited',
      message: 'Slow down',
      client_msg_id: cmid,
      retry_after_ms: 41_000,
    });
    await expect(result).resolves.toMatchObject({
      ok: false,
      error: { code: 'rate_limited', retry_after_ms: 41_000, at: time.now },
    });
    expect(snap().pending).toMatchObject([
      { client_msg_id: cmid, status: 'failed', error: { code: 'rate_limited', retry_after_ms: 41_000 } },
    ]);
    expect(snap().error).toBeNull();
    const again = client.retry(cmid);
    expect(snap().pending[0]!.status).toBe('pending');
    expect(socket().sentOf('message')).toHaveLength(2);
    expect(socket().sentOf('message')[1].client_msg_id).toBe(cmid);
    socket().receive({ type: 'new_message', message: msg(1, { user_id: 'u-me', client_msg_id: cmid }) });
    await expect(again).resolves.toMatchObject({ ok: true });
  });

  it('refuses empty and too long messages without sending', async () => {
    const { client, socket, snap } = await connected([]);
    await expect(client.send('   ')).resolves.toMatchObject({
      ok: false,
      error: { code: 'invalid_message' },
    });
    await expect(client.send('x'.repeat(501))).resolves.toMatchObject({
      ok: false,
      error: { code: 'message_too_long' },
    });
    expect(socket().sent).toEqual([]);
    expect(snap().pending).toEqual([]);
  });

  it('chat_closed fails what is still pending, and sends are refused while closed', async () => {
    const { client, socket, snap } = await connected([msg(1)]);
    const result = client.send('late');
    socket().receive({ type: 'chat_closed', session_id: 7, reason: 'window_ended' });
    await expect(result).resolves.toMatchObject({ ok: false, error: { code: 'chat_closed' } });
    await expect(client.send('later')).resolves.toMatchObject({ ok: false, error: { code: 'chat_closed' } });
    expect(snap().messages.map((m) => m.id)).toEqual([1]);
  });
});

describe('ChatClient: likes and tokens', () => {
  it('sends hearts at most 10 a second after a burst of 20 (under the server limit), and none until a refusal’s retry_after_ms has passed', async () => {
    const { client, socket, time } = await connected();
    // An eager tapper: 60 taps at once, then 30 a second.
    const taps = (n: number) => Array.from({ length: n }, () => client.like()).filter(Boolean).length;
    expect(taps(60)).toBe(20);
    await time.advance(1000);
    expect(taps(30)).toBe(10);
    await time.advance(500);
    expect(taps(30)).toBe(5);
    expect(socket().sentOf('like')).toHaveLength(35);
    // Another tab used the user's limit: the server refuses one, and says when to go on.
    await time.advance(10_000);
    socket().receive({ type: 'error', code: 'rate_limited', message: 'Slow down.', retry_after_ms: 2000 });
    expect(taps(5)).toBe(0);
    await time.advance(1999);
    expect(client.like()).toBe(false);
    await time.advance(1);
    expect(client.like()).toBe(true);
    expect(socket().sentOf('like')).toHaveLength(36);
  });

  it('likes and unlikes a message optimistically; the server count wins', async () => {
    const { client, socket, snap } = await connected([msg(1, { likes: 2 })]);
    expect(client.likeMessage(1)).toBe(true);
    expect(snap().messages[0]).toMatchObject({ liked_by_me: true, likes: 3 });
    expect(client.likeMessage(1)).toBe(false);
    socket().receive({ type: 'message_like_update', message_id: 1, likes: 4 });
    expect(snap().messages[0]).toMatchObject({ liked_by_me: true, likes: 4 });
    expect(client.unlikeMessage(1)).toBe(true);
    expect(snap().messages[0]).toMatchObject({ liked_by_me: false, likes: 3 });
    expect(client.like()).toBe(true);
    expect(socket().sent).toEqual([
      { type: 'like_message', message_id: 1 },
      { type: 'unlike_message', message_id: 1 },
      { type: 'like' },
    ]);
  });

  it('a refusal soon after a message like (rate limited): the shown counts and liked_by_me are read again from the server', async () => {
    let truth = [msg(1, { likes: 2, liked_by_me: false }), msg(2, { likes: 5, liked_by_me: true })];
    const pages: string[] = [];
    const { client, socket, snap, time } = await connected(
      [msg(1, { likes: 2 }), msg(2, { likes: 5, liked_by_me: true })],
      {
        fetch: async (url) => {
          const path = new URL(url).pathname;
          if (path === '/live-chat/messages') pages.push(url);
          const body =
            path === '/live-chat/status'
              ? status()
              : { session_id: SESSION.id, messages: truth, has_more: false };
          return { ok: true, status: 200, json: async () => body };
        },
      },
    );
    const before = pages.length;
    expect(client.likeMessage(1)).toBe(true);
    expect(client.unlikeMessage(2)).toBe(true);
    expect(snap().messages.map((m) => [m.likes, m.liked_by_me])).toEqual([
      [3, true],
      [4, false],
    ]);
    // The like of message 1 went through (the server's count says so); the unlike of message 2 was refused.
    truth = [msg(1, { likes: 3, liked_by_me: true }), msg(2, { likes: 5, liked_by_me: true })];
    socket().receive({ type: 'error', code: 'rate_limited', message: 'Slow down.', retry_after_ms: 900 });
    await time.advance(LIKE_RECHECK_MS);
    expect(pages.length).toBe(before + 1);
    expect(snap().messages.map((m) => [m.likes, m.liked_by_me])).toEqual([
      [3, true],
      [5, true],
    ]);
    // A refusal long after the last like (a heart's, say) reads nothing again.
    await time.advance(10_000);
    socket().receive({ type: 'error', code: 'rate_limited', message: 'Slow down.', retry_after_ms: 900 });
    await time.advance(LIKE_RECHECK_MS);
    expect(pages.length).toBe(before + 1);
  });

  it('keeps liked_by_me from init (a reloaded client shows its own likes)', async () => {
    const { snap } = await connected([msg(1, { likes: 1, liked_by_me: true })]);
    expect(snap().messages[0]!.liked_by_me).toBe(true);
  });

  it('[SPEC §5] renews a token shortly before it expires and sends it as `auth` on the open socket', async () => {
    const time = new FakeTime();
    let n = 0;
    const exp = (offsetMs: number) => Math.floor((time.now + offsetMs) / 1000);
    const t = setup({
      getToken: () => jwt({ sub: 'u-me', n: ++n, exp: exp(5 * 60_000) }),
      setTimeout: time.setTimeout,
      clearTimeout: time.clearTimeout,
      now: () => time.now,
    });
    t.client.start();
    await flush();
    t.socket().open();
    t.socket().receive(init([]));
    await time.advance(3 * 60_000);
    expect(t.socket().sentOf('auth')).toEqual([]);
    await time.advance(60_000 + 1000);
    const auth = t.socket().sentOf('auth');
    expect(auth).toHaveLength(1);
    expect(JSON.parse(Buffer.from(auth[0].token.split('.')[1], 'base64url').toString()).n).toBe(2);
  });

  it('a silent connection is dropped by the heartbeat and resumed', async () => {
    const { socket, snap, time } = await connected([msg(1)], { heartbeatMs: 25_000 });
    const first = socket();
    await time.advance(25_000);
    expect(first.sentOf('ping')).toHaveLength(1);
    await time.advance(25_000);
    expect(snap().state).toBe('reconnecting');
    expect(first.closedByClient).toBe(4000);
    await time.advance(500);
    expect(socket()).not.toBe(first);
    expect(socket().query.get('since')).toBe('1');
  });

  it('a ping left unanswered drops the connection 10 s after it, not at the next ping', async () => {
    const { socket, snap, time } = await connected([msg(1)], { heartbeatMs: 25_000 });
    const first = socket();
    await time.advance(25_000);
    expect(first.sentOf('ping')).toHaveLength(1);
    await time.advance(9_000);
    expect(snap().state).toBe('open');
    await time.advance(1_500);
    expect(snap().state).toBe('reconnecting');
    expect(first.closedByClient).toBe(4000);
  });

  it('late timers (a tab hidden for minutes runs them about once a minute) do not drop a connection that answers its pings', async () => {
    const { socket, snap, time } = await connected([msg(1)], { heartbeatMs: 25_000 });
    const first = socket();
    // Every timer of the heartbeat fires a minute after it was set, as Chrome does in a long-hidden tab.
    const throttle = () => {
      for (const t of time.timers.values()) if (t.at > time.now) t.at = time.now + 60_000;
    };
    for (let round = 1; round <= 4; round++) {
      throttle();
      await time.advance(60_000);
      expect(first.sentOf('ping').length, `round ${round}`).toBeGreaterThanOrEqual(1);
      // The server answers at once (a message event is not throttled).
      first.receive({ type: 'pong', server_time: new Date(time.now).toISOString() });
      throttle();
      await time.advance(60_000);
      expect(snap().state, `round ${round}`).toBe('open');
    }
    expect(first.closedByClient).toBeUndefined();
    expect(socket()).toBe(first);
  });

  it('accepts the `ws` package as its WebSocket (types line up)', () => {
    const Ctor: WebSocketConstructor = WebSocket;
    expect(typeof Ctor).toBe('function');
  });
});
