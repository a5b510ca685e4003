import { Agent, request } from 'node:http';
import { type LatencySummary, newHistogram, recordMs, summary } from './hist.js';

function get(agent: Agent, url: URL, token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { agent, method: 'GET', headers: { authorization: `Bearer ${token}`, accept: 'application/json' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

export interface HistoryLoadResult {
  requests: number;
  perSecond: number;
  errors: number;
  all: LatencySummary;
  newest: LatencySummary;
  older: LatencySummary;
}

/**
 * `GET /live-chat/messages` from `concurrency` keep-alive connections for `seconds`: a quarter of the requests
 * ask for the newest page, the rest for a page before a random message id anywhere in the session.
 */
export async function historyLoad(o: {
  url: string;
  token: string;
  sessionId: number;
  seconds: number;
  concurrency: number;
}): Promise<HistoryLoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: o.concurrency });
  const base = `${o.url}/live-chat/messages?session_id=${o.sessionId}`;
  const newestPage = JSON.parse((await get(agent, new URL(base), o.token)).body) as {
    messages: Array<{ id: number }>;
  };
  const oldestPage = JSON.parse((await get(agent, new URL(`${base}&after_id=0&limit=1`), o.token)).body) as {
    messages: Array<{ id: number }>;
  };
  const maxId = newestPage.messages.at(-1)?.id ?? 1;
  const minId = oldestPage.messages[0]?.id ?? 1;
  // Warm up (token cache, statement caches, JIT) before measuring.
  for (let i = 0; i < 50; i++) await get(agent, new URL(`${base}&before_id=${maxId - i * 997}`), o.token);
  const all = newHistogram();
  const newest = newHistogram();
  const older = newHistogram();
  let requests = 0;
  let errors = 0;
  const until = performance.now() + o.seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: o.concurrency }, async (_, worker) => {
      let n = worker;
      while (performance.now() < until) {
        const isNewest = n++ % 4 === 0;
        const before = minId + 100 + Math.floor(Math.random() * Math.max(1, maxId - minId - 100));
        const url = new URL(isNewest ? base : `${base}&before_id=${before}`);
        const t0 = performance.now();
        const res = await get(agent, url, o.token);
        const ms = performance.now() - t0;
        requests++;
        if (res.status !== 200) errors++;
        recordMs(all, ms);
        recordMs(isNewest ? newest : older, ms);
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  agent.destroy();
  return {
    requests,
    perSecond: requests / elapsed,
    errors,
    all: summary(all),
    newest: summary(newest),
    older: summary(older),
  };
}
