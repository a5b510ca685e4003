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
