import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/domain/clock.js';
import { startServer, type TestServer } from '../support/server.js';

// Draw windows driven by an injected clock: nothing here waits for real hours.
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
      const page = await t.request('GET', '/');
      expect(page.status).toBe(200);
      expect(page.body).toContain('/docs');
    } finally {
      await t.close();
    }
  });
});
