import { mkdtempSync, rmSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/domain/clock.js';
import type { KyselyChatStore } from '../../src/store/kysely-store.js';
import { holdWrites } from '../support/hold.js';
import { startServer, type TestServer } from '../support/server.js';

// Draw windows driven by an injected clock: nothing here waits for real hours.

/** Polls `read` until it returns `want` or `ms` have passed; returns its last value, for the caller to assert. */
async function settled<T>(read: () => Promise<T>, want: T, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (JSON.stringify(value) === JSON.stringify(want) || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
}
describe('draw windows on a running server', () => {
  let t: TestServer | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  const weekly = { DRAW_SCHEDULE: '0 20 * * 5', DRAW_TIMEZONE: 'Europe/London' };

  it('[SPEC §3] status follows the phases: closed, pre_draw, post_draw, closed, with the next opening', async () => {
    // Friday 2026-11-27 20:00 London = 20:00 UTC (winter time).
    const clock = new ManualClock('2026-11-27T12:00:00Z');
    t = await startServer({ clock, env: weekly });
    const at = async (iso: string) => {
      clock.set(iso);
      // Dev tokens last 24 hours of the (manual) clock; a fresh one for each instant.
      const fresh = await t!.token('ada');
      return (await t!.request('GET', '/live-chat/status', { token: fresh })).body;
    };

    const closed = await at('2026-11-27T12:00:00Z');
    expect(closed).toMatchObject({
      enabled: true,
      is_active: false,
      phase: 'closed',
      session: null,
      next_draw_time: '2026-11-27T20:00:00.000Z',
      opens_at: '2026-11-27T19:00:00.000Z',
      closes_at: '2026-11-27T21:00:00.000Z',
      server_time: '2026-11-27T12:00:00.000Z',
      settings: { max_messages_per_minute: 10, history_limit: 100, max_message_length: 500 },
    });

    const pre = await at('2026-11-27T19:30:00Z');
    expect(pre).toMatchObject({
      is_active: true,
      phase: 'pre_draw',
      next_draw_time: '2026-11-27T20:00:00.000Z',
    });
    expect(pre.session).toMatchObject({
      draw_time: '2026-11-27T20:00:00.000Z',
      starts_at: '2026-11-27T19:00:00.000Z',
      ends_at: '2026-11-27T21:00:00.000Z',
      is_active: true,
      total_likes: 0,
      viewer_count: 0,
    });

    const post = await at('2026-11-27T20:59:59Z');
    expect(post).toMatchObject({
      is_active: true,
      phase: 'post_draw',
      next_draw_time: '2026-12-04T20:00:00.000Z',
    });
    expect(post.session.id).toBe(pre.session.id);

    const after = await at('2026-11-27T21:00:00Z');
    expect(after).toMatchObject({
      is_active: false,
      phase: 'closed',
      session: null,
      opens_at: '2026-12-04T19:00:00.000Z',
    });

    // Summer time: the same local 20:00 is 19:00 UTC.
    const summer = await at('2027-07-02T18:30:00Z');
    expect(summer).toMatchObject({ phase: 'pre_draw' });
    expect(summer.session.draw_time).toBe('2027-07-02T19:00:00.000Z');
    expect(summer.session.id).not.toBe(pre.session.id);
  });

  it('[SPEC §3] a window that ends while clients are connected sends chat_closed and closes 4409; history stays readable', async () => {
    const clock = new ManualClock('2026-11-27T20:30:00Z');
    t = await startServer({ clock, env: weekly });
    const token = await t.token('ada');
    const sessionId = await t.sessionId(token);
    const client = await t.connect(sessionId, token);
    const sent = await t.request('POST', '/live-chat/messages', {
      token,
      body: { message: 'before the end' },
    });
    expect(sent.status).toBe(201);

    clock.set('2026-11-27T21:00:00Z');
    const closedEvent = await client.next('chat_closed');
    expect(closedEvent).toEqual({ type: 'chat_closed', session_id: sessionId, reason: 'window_ended' });
    expect((await client.closed).code).toBe(4409);

    const late = await t.request('POST', '/live-chat/messages', { token, body: { message: 'too late' } });
    expect(late.status).toBe(409);
    expect(late.body.error.code).toBe('chat_closed');
    const heart = await t.request('POST', '/live-chat/like', { token });
    expect(heart.status).toBe(409);
    const reconnect = await t.connect(sessionId, token, { waitForInit: false });
    expect((await reconnect.closed).code).toBe(4409);

    const history = await t.request('GET', `/live-chat/messages?session_id=${sessionId}`, { token });
    expect(history.body.messages.map((m: any) => m.message)).toEqual(['before the end']);
    // Without session_id, history falls back to the latest session.
    const latest = await t.request('GET', '/live-chat/messages', { token });
    expect(latest.body.session_id).toBe(sessionId);
  });

  it('[SPEC §6] a message still committing when its window ends is answered and shown to everyone before chat_closed', async () => {
    const clock = new ManualClock('2026-11-27T20:59:59Z');
    t = await startServer({ clock, env: weekly });
    const token = await t.token('ada');
    const sessionId = await t.sessionId(token);
    const sender = await t.connect(sessionId, token);
    const viewer = await t.connect(sessionId, await t.token('bob'));
    const held = holdWrites(t.server.store, (batch) => batch.messages.length > 0);
    sender.send({ type: 'message', message: 'just in time', client_msg_id: 'last-1' });
    await new Promise((r) => setTimeout(r, 100)); // read and queued; its commit is held
    clock.set('2026-11-27T21:00:00Z');
    await new Promise((r) => setTimeout(r, 100));
    held.release();
    for (const c of [sender, viewer]) {
      await c.next('chat_closed');
      const order = c.events
        .filter((e: any) => e.type === 'new_message' || e.type === 'chat_closed' || e.type === 'error')
        .map((e: any) => (e.type === 'new_message' ? e.message.client_msg_id : e.type));
      expect(order).toEqual(['last-1', 'chat_closed']);
      expect((await c.closed).code).toBe(4409);
    }
    held.restore();
  });

  it('[SPEC §3] overlapping windows switch at the midpoint: one session closes, the next one opens', async () => {
    // Hourly draws with 1 h before and after: each window is draw ± 30 min, so the chat is always open.
    const clock = new ManualClock('2026-11-25T10:10:00Z');
    t = await startServer({ clock });
    const token = await t.token('ada');
    const first = (await t.request('GET', '/live-chat/status', { token })).body.session;
    expect(first).toMatchObject({
      draw_time: '2026-11-25T10:00:00.000Z',
      ends_at: '2026-11-25T10:30:00.000Z',
    });
    const client = await t.connect(first.id, token);
    clock.set('2026-11-25T10:30:00Z');
    await client.next('chat_closed');
    expect((await client.closed).code).toBe(4409);
    const second = (await t.request('GET', '/live-chat/status', { token })).body;
    expect(second).toMatchObject({ phase: 'pre_draw', is_active: true });
    expect(second.session).toMatchObject({
      draw_time: '2026-11-25T11:00:00.000Z',
      starts_at: '2026-11-25T10:30:00.000Z',
    });
    expect(second.session.id).toBeGreaterThan(first.id);
    const next = await t.connect(second.session.id, token);
    expect(next.init!.session.id).toBe(second.session.id);
  });

  it('[SPEC §8] is_active in the database: set when the window opens even if the database fails at that moment, and cleared by a restart in a closed gap after a crash left it set', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'drawchat-flag-'));
    try {
      const flags = async (server: TestServer) =>
        (
          await (server.server.store as KyselyChatStore).db
            .selectFrom('live_chat_sessions')
            .select(['id', 'is_active'])
            .orderBy('id')
            .execute()
        ).map((r) => [Number(r.id), Boolean(r.is_active)]);
      const clock = new ManualClock('2026-11-27T18:30:00Z');
      t = await startServer({ clock, env: weekly, dataDir: dir });
      const store = t.server.store;
      const setActive = store.setActiveSession.bind(store);
      let failures = 1;
      store.setActiveSession = async (id) => {
        if (failures > 0) {
          failures--;
          throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
        }
        return setActive(id);
      };
      clock.set('2026-11-27T19:00:00Z'); // the window opens; the flag's write fails once
      const token = await t.token('ada');
      const sid = await t.sessionId(token);
      expect(await settled(() => flags(t!), [[sid, true]], 5000)).toEqual([[sid, true]]);
      // A crash leaves the flag set (stop() does not touch it either); the next start is in the closed gap.
      store.setActiveSession = setActive;
      await t.close();
      t = await startServer({ clock: new ManualClock('2026-11-27T22:00:00Z'), env: weekly, dataDir: dir });
      expect(await settled(() => flags(t!), [[sid, false]], 5000)).toEqual([[sid, false]]);
    } finally {
      await t?.close();
      t = undefined;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('[SPEC §3] LIVE_CHAT_ENABLED=false: status says so, sockets are refused, writes are refused', async () => {
    t = await startServer({ env: { LIVE_CHAT_ENABLED: 'false' } });
    const token = await t.token('ada');
    const status = (await t.request('GET', '/live-chat/status', { token })).body;
    expect(status).toMatchObject({ enabled: false, is_active: false, phase: 'closed', session: null });
    const write = await t.request('POST', '/live-chat/messages', { token, body: { message: 'hi' } });
    expect(write.status).toBe(503);
    expect(write.body.error.code).toBe('chat_disabled');
    const socket = await t.connect(1, token, { waitForInit: false });
    expect((await socket.closed).code).toBe(4409);
  });
});

describe('operations endpoints', () => {
  it('[SPEC §4] /healthz, /readyz, /metrics and /docs answer without credentials', async () => {
    const t = await startServer();
    try {
      const token = await t.token('ada');
      const sessionId = await t.sessionId(token);
      const client = await t.connect(sessionId, token);
      client.send({ type: 'message', message: 'counted' });
      await client.next('new_message');
      client.send({ type: 'message', message: '' });
      await client.next('error');
      expect((await t.request('GET', '/healthz')).status).toBe(200);
      const ready = await t.request('GET', '/readyz');
      expect(ready).toMatchObject({ status: 200, body: { status: 'ok', checks: { database: 'ok' } } });
      const metrics = await t.request('GET', '/metrics');
      expect(metrics.status).toBe(200);
      expect(metrics.headers.get('content-type')).toMatch(/text\/plain/);
      const text = metrics.body as string;
      expect(text).toMatch(/^drawchat_open_connections 1$/m);
      expect(text).toMatch(new RegExp(`^drawchat_viewers\\{session_id="${sessionId}"\\} 1$`, 'm'));
      expect(text).toMatch(/^drawchat_messages_total 1$/m);
      expect(text).toMatch(/^drawchat_errors_total\{code="invalid_message"\} 1$/m);
      expect(text).toMatch(/^drawchat_message_delivery_seconds_count 1$/m);
      // An idle node's rooms tick at their usual pace.
      expect(text).toMatch(/^drawchat_tick_spacing_factor 1$/m);
      const spec = await t.request('GET', '/docs/json');
      expect(spec.status).toBe(200);
      const paths = Object.keys(spec.body.paths);
      for (const p of [
        '/live-chat/status',
        '/live-chat/messages',
        '/live-chat/like',
        '/live-chat/like-message/{message_id}',
        '/live-chat/sessions/{session_id}/winners',
        '/live-chat/users/{user_id}',
        '/live-chat/ws/{session_id}',
        '/healthz',
        '/readyz',
        '/metrics',
      ]) {
        expect(paths, p).toContain(p);
      }
      expect(spec.body.info.description).toContain('new_message');
      expect(spec.body.info.description).toContain('4409');
      expect(spec.body.info.description).toContain('1011');
      // Each operation lists the statuses it can answer, and none it cannot.
      const statuses = (path: string, method: string) =>
        Object.keys(spec.body.paths[path][method].responses).map(Number);
      expect(statuses('/live-chat/status', 'get')).toEqual([200, 401, 403, 503]);
      expect(statuses('/live-chat/messages', 'get')).toEqual([200, 400, 401, 403, 404, 503]);
      expect(statuses('/live-chat/messages', 'post')).toEqual([201, 400, 401, 404, 409, 413, 415, 429, 503]);
      expect(statuses('/live-chat/like', 'post')).toEqual([200, 400, 401, 404, 409, 413, 415, 429, 503]);
      expect(statuses('/live-chat/like-message/{message_id}', 'post')).toEqual([
        200, 400, 401, 404, 409, 414, 429, 503,
      ]);
      expect(statuses('/live-chat/messages/{message_id}', 'delete')).toEqual([
        200, 400, 401, 403, 404, 414, 503,
      ]);
      expect(statuses('/live-chat/sessions/{session_id}/winners', 'post')).toEqual([
        200, 400, 401, 403, 404, 413, 414, 415, 503,
      ]);
      expect(statuses('/live-chat/users/{user_id}', 'put')).toEqual([200, 400, 401, 403, 413, 414, 415, 503]);
      const page = await t.request('GET', '/');
      expect(page.status).toBe(200);
      expect(page.body).toContain('/docs');
    } finally {
      await t.close();
    }
  });

  it('[SPEC §4] what is refused before any route is found (a bad percent-encoding, an over-long path parameter) and while shutting down still gets the coded error body', async () => {
    const t = await startServer();
    let closing: Promise<void> | undefined;
    try {
      const token = await t.token('edna');
      const sessionId = await t.sessionId(token);
      for (const [method, path, status, code] of [
        ['POST', '/live-chat/like-message/%E0%A4%A', 400, 'bad_request'],
        ['PUT', '/live-chat/users/%zz', 400, 'bad_request'],
        ['POST', `/live-chat/like-message/${'9'.repeat(400)}`, 414, 'uri_too_long'],
      ] as const) {
        const res = await t.request(method, path, { token });
        expect(res.status, path.slice(0, 40)).toBe(status);
        expect(res.body.error?.code, path.slice(0, 40)).toBe(code);
        expect(typeof res.body.error.message).toBe('string');
      }
      // A peer that never answers the close frame holds the shutdown open for a while (ws' closeTimeout).
      const port = new URL(t.url).port;
      const peer = tcpConnect(Number(port), '127.0.0.1');
      const upgraded = new Promise<void>((resolve) => peer.once('data', () => resolve()));
      peer.write(
        `GET /live-chat/ws/${sessionId}?token=${token} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
          'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n' +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
      );
      await upgraded;
      closing = t.close();
      await new Promise((r) => setTimeout(r, 200));
      const refused = await t.request('GET', '/live-chat/status', { token });
      expect(refused.status).toBe(503);
      expect(refused.body.error?.code).toBe('not_ready');
      const ready = await t.request('GET', '/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body).toMatchObject({ status: 'unavailable', checks: { server: 'shutting down' } });
      peer.destroy();
    } finally {
      await (closing ?? t.close());
    }
  });
});
