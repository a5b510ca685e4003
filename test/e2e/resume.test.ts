import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_RESUME_MESSAGES } from '../../src/protocol/messages.js';
import { startServer, type TestServer } from '../support/server.js';

// Resume is bounded and knows its history (docs/API.md "Resume").
describe('resume with since and epoch', () => {
  let t: TestServer;
  let token: string;
  let sessionId: number;
  beforeAll(async () => {
    t = await startServer({ env: { LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE: '100000' } });
    token = await t.token('resumer');
    sessionId = await t.sessionId(token);
  });
  afterAll(() => t.close());

  const post = async (n: number) => {
    const ids: number[] = [];
    for (let i = 0; i < n; i += 50) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(50, n - i) }, (_, k) =>
          t.request('POST', '/live-chat/messages', { token, body: { message: `bulk ${i + k}` } }),
        ),
      );
      ids.push(...batch.map((r) => r.body.id));
    }
    return ids.sort((a, b) => a - b);
  };

  it('init carries the epoch; resuming with the same epoch replays the missed messages', async () => {
    const first = await t.connect(sessionId, token);
    const epoch = first.init!.epoch;
    expect(epoch).toMatch(/^[0-9a-f-]{36}$/);
    first.close();
    const [since, ...missed] = await post(4);
    const resumed = await t.connect(sessionId, token, { query: `since=${since}&epoch=${epoch}` });
    expect(resumed.events[0]!.type).toBe('init');
    expect(resumed.init!.messages.map((m: any) => m.id)).toEqual(missed);
    resumed.close();
  });

  it('a message deleted while the viewer was away is deleted on their screen after the resume', async () => {
    // Moderation must reach everyone: a viewer reconnecting after a host removed a message they had seen gets
    // `message_deleted` for it right after `init`, although its id is at or below `since`.
    const host = await t.token('moderator', { roles: ['host'] });
    const [doomed, kept, last] = await post(3);
    const viewer = await t.connect(sessionId, token);
    const epoch = viewer.init!.epoch;
    expect(viewer.init!.messages.map((m: any) => m.id)).toEqual(expect.arrayContaining([doomed, kept, last]));
    viewer.close();
    expect((await t.request('DELETE', `/live-chat/messages/${doomed}`, { token: host })).status).toBe(200);
    const [after] = await post(1);
    const resumed = await t.connect(sessionId, token, { query: `since=${last}&epoch=${epoch}` });
    expect(resumed.events[0]!.type).toBe('init');
    expect(resumed.init!.messages.map((m: any) => m.id)).toEqual([after]);
    const deleted = await resumed.next('message_deleted');
    expect(deleted).toEqual({ type: 'message_deleted', session_id: sessionId, message_id: doomed });
    resumed.close();
    // A fresh connection (no since) gets recent history without the message, and no replayed deletion.
    const fresh = await t.connect(sessionId, token);
    expect(fresh.init!.messages.map((m: any) => m.id)).not.toContain(doomed);
    expect(fresh.events.filter((e) => e.type === 'message_deleted')).toEqual([]);
    fresh.close();
  });

  it('a retry of a message deleted meanwhile (the client resends what it had pending after a reconnect) is refused not_found, over HTTP and WS, and nothing reappears', async () => {
    const host = await t.token('moderator', { roles: ['host'] });
    const sent = await t.request('POST', '/live-chat/messages', {
      token,
      body: { message: 'soon removed', client_msg_id: 'gone-1' },
    });
    expect(sent.status).toBe(201);
    expect((await t.request('DELETE', `/live-chat/messages/${sent.body.id}`, { token: host })).status).toBe(
      200,
    );
    const retried = await t.request('POST', '/live-chat/messages', {
      token,
      body: { message: 'soon removed', client_msg_id: 'gone-1' },
    });
    expect(retried.status).toBe(404);
    expect(retried.body.error.code).toBe('not_found');
    const socket = await t.connect(sessionId, token);
    socket.send({ type: 'message', message: 'soon removed', client_msg_id: 'gone-1' });
    const refused = await socket.next('error');
    expect(refused).toMatchObject({ code: 'not_found', client_msg_id: 'gone-1' });
    expect(socket.events.filter((e) => e.type === 'new_message')).toEqual([]);
    // The user's next message is taken as usual, and history does not hold the deleted one.
    socket.send({ type: 'message', message: 'after the removal', client_msg_id: 'gone-2' });
    expect((await socket.next('new_message')).message.client_msg_id).toBe('gone-2');
    const page = await t.request('GET', '/live-chat/messages', { token });
    expect(page.body.messages.map((m: any) => m.id)).not.toContain(sent.body.id);
    socket.close();
  });

  it('a node started after the deletion replays it too (read from the database)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'drawchat-resume-'));
    try {
      let first: TestServer | undefined = await startServer({ dataDir });
      const viewerToken = await first.token('away');
      const host = await first.token('moderator', { roles: ['host'] });
      const session = await first.sessionId(viewerToken);
      const ids: number[] = [];
      for (const text of ['one', 'two']) {
        ids.push(
          (
            await first.request('POST', '/live-chat/messages', {
              token: viewerToken,
              body: { message: text },
            })
          ).body.id,
        );
      }
      const viewer = await first.connect(session, viewerToken);
      const epoch = viewer.init!.epoch;
      viewer.close();
      expect((await first.request('DELETE', `/live-chat/messages/${ids[0]}`, { token: host })).status).toBe(
        200,
      );
      await first.close();
      first = undefined;
      const second = await startServer({ dataDir });
      try {
        const resumed = await second.connect(session, viewerToken, {
          query: `since=${ids[1]}&epoch=${epoch}`,
        });
        expect(resumed.init!.messages).toEqual([]);
        expect(await resumed.next('message_deleted')).toMatchObject({ message_id: ids[0] });
        resumed.close();
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('another epoch (a recreated database) gets resync_required, then a fresh init', async () => {
    const [, last] = await post(2);
    const c = await t.connect(sessionId, token, {
      query: `since=${last}&epoch=00000000-0000-0000-0000-000000000000`,
    });
    expect(c.events[0]).toMatchObject({ type: 'resync_required', reason: 'epoch_changed' });
    expect(c.events[0]!.epoch).toBe(c.init!.epoch);
    expect(c.init!.messages.at(-1).id).toBe(last);
    expect(c.init!.messages.length).toBeGreaterThan(1);
    c.close();
  });

  it('a position beyond the newest message gets resync_required (unknown_position)', async () => {
    const c = await t.connect(sessionId, token, { query: 'since=999999999' });
    expect(c.events[0]).toMatchObject({ type: 'resync_required', reason: 'unknown_position' });
    expect(c.init!.messages.length).toBeGreaterThan(0);
    c.close();
  });

  it(`more than ${MAX_RESUME_MESSAGES} missed messages: resync_required (too_far_behind) and recent history`, async () => {
    const [since] = await post(1);
    const missed = await post(MAX_RESUME_MESSAGES + 1);
    const c = await t.connect(sessionId, token, { query: `since=${since}` });
    expect(c.events[0]).toMatchObject({ type: 'resync_required', reason: 'too_far_behind' });
    expect(c.init!.messages.map((m: any) => m.id)).toEqual(missed.slice(-100));
    // Exactly the limit is still replayed.
    const edge = await t.connect(sessionId, token, { query: `since=${missed.at(-MAX_RESUME_MESSAGES - 1)}` });
    expect(edge.events[0]!.type).toBe('init');
    expect(edge.init!.messages).toHaveLength(MAX_RESUME_MESSAGES);
    c.close();
    edge.close();
  });
});
