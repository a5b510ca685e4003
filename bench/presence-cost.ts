/**
 * `npx tsx bench/presence-cost.ts [--nodes 4] [--viewers 5000] [--churn 40] [--seconds 10] [--url redis://…]`:
 * what counting viewers across nodes costs Redis while viewers come and go (docs/DEPLOYMENT.md, viewer presence).
 *
 * Starts a private redis-server (or uses `--url`, which it FLUSHES: never point it at a shared Redis), runs
 * `--nodes` RedisPresence instances on it, each with its own connection and `--viewers` viewers of its own, their
 * rings delivered to each other as the bus does, and once every node counts them all, `--churn` joins and leaves a
 * second (half each, on random nodes, so the room keeps its size) for `--seconds`. Meanwhile another process
 * sends a rate-limit-like MULTI (the message limit's: ZREMRANGEBYSCORE, ZADD, ZCARD, ZRANGE, PEXPIRE) one after
 * another and times each: what every message send, handshake and heart waits for on that Redis. Prints the
 * probe's p50/p99/max, Redis's CPU time during the churn, the commands that took most of it (INFO
 * commandstats), the rings, and whether every node ends on the exact count.
 */
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { type LocalViewers, RedisPresence } from '../src/realtime/presence.js';
import { newHistogram, recordMs, summary } from './lib/hist.js';
import { sleep } from './lib/session.js';
import { freePort } from './lib/targets.js';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '4' },
    viewers: { type: 'string', default: '5000' },
    churn: { type: 'string', default: '40' },
    seconds: { type: 'string', default: '10' },
    url: { type: 'string' },
    probe: { type: 'string' },
  },
});
const seconds = Number(values.seconds);
const SESSION = 1;

if (values.probe) {
  // The probe, in a process of its own so that the simulated nodes' JavaScript does not delay its timings.
  const redis = new Redis(values.probe);
  const h = newHistogram();
  const until = performance.now() + seconds * 1000;
  for (let i = 0; performance.now() < until; i++) {
    const key = `probe:limit:${i % 100}`;
    const now = Date.now();
    const t0 = performance.now();
    await redis
      .multi()
      .zremrangebyscore(key, '-inf', now - 60_000)
      .zadd(key, now, `m${i}`)
      .zcard(key)
      .zrange(key, 0, 0, 'WITHSCORES')
      .pexpire(key, 60_000)
      .exec();
    recordMs(h, performance.now() - t0);
    await sleep(2);
  }
  process.send!(summary(h));
  redis.disconnect();
  process.exit(0);
}

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

class Node implements LocalViewers {
  readonly users_ = new Set<string>();
  presence!: RedisPresence;
  sessions(): number[] {
    return this.users_.size > 0 ? [SESSION] : [];
  }
  users(): string[] {
    return [...this.users_];
  }
  count(): number {
    return this.users_.size;
  }
  join(userId: string): void {
    if (this.users_.has(userId)) return;
    this.users_.add(userId);
    this.presence.changed(SESSION, userId, true);
  }
  leave(userId: string): void {
    if (!this.users_.delete(userId)) return;
    this.presence.changed(SESSION, userId, false);
  }
}

let server: ChildProcess | undefined;
let url = values.url;
if (!url) {
  const port = await freePort();
  server = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    {
      stdio: 'ignore',
    },
  );
  url = `redis://127.0.0.1:${port}`;
  await sleep(300);
}
const admin = new Redis(url);
await admin.flushall();

const nodeCount = Number(values.nodes);
const perNode = Number(values.viewers);
const nodes: Node[] = [];
let rings = 0;
for (let i = 0; i < nodeCount; i++) {
  const node = new Node();
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  node.presence = new RedisPresence(redis, node, `node-${i}`, 'bench:', quiet, {
    ring: (sessionId) => {
      rings++;
      for (const n of nodes) n.presence.recount(sessionId);
    },
  });
  nodes.push(node);
}
const truth = () => new Set(nodes.flatMap((n) => n.users())).size;
const exact = () => nodes.every((n) => n.presence.count(SESSION) === truth());

console.log(`${nodeCount} nodes × ${perNode} viewers; joining…`);
for (const [i, node] of nodes.entries()) {
  for (let u = 0; u < perNode; u++) {
    node.join(`n${i}-u${u}`);
    if (u % 500 === 499) await sleep(5);
  }
}
for (let waited = 0; !exact() && waited < 60_000; waited += 100) await sleep(100);
await sleep(1_000);
if (!exact()) console.log('warning: the nodes do not agree on the count before the churn');

const cpu = async () => {
  const info = await admin.info('cpu');
  const v = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  return v('used_cpu_sys') + v('used_cpu_user');
};
await admin.config('RESETSTAT');
rings = 0;
const cpuBefore = await cpu();
const started = performance.now();
const probe = fork(new URL(import.meta.url).pathname, ['--probe', url, '--seconds', String(seconds)]);
const probed = new Promise<ReturnType<typeof summary>>((resolve) =>
  probe.once('message', (m) => resolve(m as any)),
);

const churn = Number(values.churn);
let next = 0;
let changes = 0;
const due = () => Math.floor(((performance.now() - started) * churn) / 1000);
while (performance.now() - started < seconds * 1000) {
  for (; changes < due(); changes++) {
    const node = nodes[Math.floor(Math.random() * nodeCount)]!;
    if (changes % 2 === 0) node.join(`c-${next++}`);
    else {
      const users = node.users();
      node.leave(users[Math.floor(Math.random() * users.length)]!);
    }
  }
  await sleep(5);
}
const elapsed = (performance.now() - started) / 1000;
const cpuUsed = (await cpu()) - cpuBefore;
const probeSummary = await probed;
const info = await admin.info('commandstats');
const stats = [...info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)]
  .map((m) => ({ cmd: m[1]!, calls: Number(m[2]), usec: Number(m[3]) }))
  .sort((a, b) => b.usec - a.usec);
for (let waited = 0; !exact() && waited < 10_000; waited += 100) await sleep(100);

console.log(
  `${changes} changes in ${elapsed.toFixed(1)} s (${(changes / elapsed).toFixed(0)}/s); rings ${rings}`,
);
console.log(
  `redis CPU ${((cpuUsed / elapsed) * 100).toFixed(1)}% of a core; probe MULTI (${probeSummary.count}): ` +
    `p50 ${probeSummary.p50} ms, p99 ${probeSummary.p99} ms, max ${probeSummary.max} ms`,
);
console.log('redis time by command (excluding the probe’s):');
const probeCmds = new Set(['multi', 'exec', 'zremrangebyscore', 'zadd', 'zcard', 'zrange', 'pexpire']);
for (const s of stats.slice(0, 8)) {
  const mark = probeCmds.has(s.cmd) ? ' (probe and presence)' : '';
  console.log(
    `  ${s.cmd.padEnd(16)} ${String(s.calls).padStart(7)} calls ${(s.usec / 1000).toFixed(1).padStart(9)} ms${mark}`,
  );
}
console.log(
  `counts: truth ${truth()}, nodes ${nodes.map((n) => n.presence.count(SESSION)).join(' ')}${exact() ? ' (exact)' : ' (NOT exact)'}`,
);
for (const n of nodes) await n.presence.close();
admin.disconnect();
server?.kill('SIGKILL');
process.exit(0);
