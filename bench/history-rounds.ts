/**
 * `npx tsx bench/history-rounds.ts [sqlite | postgres://…/<fresh db>] [messages] [rounds]`: the suite's history
 * scenario (`npm run bench -- --only history`) in rounds on one server, to compare code before and after a change
 * (run it on each, alternating) and to see how a fresh server settles. Seeds `messages` (default 1,000,000) into a
 * temp SQLite file or the given PostgreSQL database (its tables are created; give it an empty one), starts
 * draw-chat with the suite's probe, then per round: 5 s of `GET /live-chat/messages` one at a time (p50, p95, p99,
 * max), then 5 s eight at a time (pages/s, p99). `HISTORY_PROFILE=<prefix>` writes a CPU profile of each round's
 * one-at-a-time part to `<prefix>.node1.cpuprofile` (the last round's is kept); `npx tsx bench/profile-top.ts` reads it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { historyLoad } from './lib/http-load.js';
import { seedHistory } from './lib/seed.js';
import { benchWindow, startDrawChat } from './lib/targets.js';
import { TokenMint } from './lib/tokens.js';

const [db = 'sqlite', messages = '1000000', rounds = '3'] = process.argv.slice(2);
const dir = db === 'sqlite' ? mkdtempSync(join(tmpdir(), 'drawchat-history-')) : undefined;
const url = dir ? `sqlite:${join(dir, 'chat.db')}` : db;
const profile = process.env.HISTORY_PROFILE;

const mint = await TokenMint.open();
const [token] = await mint.tokens(0, 1);
const drawTime = benchWindow().drawTime;
console.log(`seeding ${messages} messages into ${dir ? 'sqlite' : db}…`);
const sessionId = await seedHistory(url, drawTime, Number(messages));
const target = await startDrawChat({
  database: url,
  drawTime,
  keysDir: mint.dir,
  label: 'history',
  probe: true,
});
/** 5 s of history pages, `concurrency` requests at a time. */
const load = (concurrency: number) =>
  historyLoad({ url: target.urls[0]!, token: token!, sessionId, seconds: 5, concurrency });
try {
  for (let round = 1; round <= Number(rounds); round++) {
    if (profile) await target.profile?.('start');
    const one = await load(1);
    if (profile) await target.profile?.('stop', profile);
    const eight = await load(8);
    const a = one.all;
    console.log(
      `round ${round}: one at a time ${one.requests} pages, p50 ${a.p50} p95 ${a.p95} p99 ${a.p99} max ${a.max} ms ` +
        `(newest page p99 ${one.newest.p99}); eight at a time ${Math.round(eight.perSecond)} pages/s, p99 ${eight.all.p99} ms` +
        (one.errors + eight.errors ? `; ${one.errors + eight.errors} errors` : ''),
    );
  }
} finally {
  await target.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}
