import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TargetKind } from './protocol.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface ProbeFigures {
  dbQueries: number;
  /** Statements outside a transaction (SQLite): what answering clients read, without the group commits. */
  dbOutsideTx: number;
  signatureChecks: number;
  loop: { p50: number; p99: number; max: number };
}

/** A server under test: its processes (for CPU and RSS), its URLs, and how to stop it. */
export interface Target {
  kind: TargetKind;
  label: string;
  urls: string[];
  /** Local processes to sample; empty for an external `--url` (then `/metrics` is read). */
  pids: number[];
  /** draw-chat's active session. */
  sessionId?: number;
  /**
   * draw-chat started with the probe: database statements and signature checks so far (all nodes), and the
   * worst node's event-loop delay since the previous call (ms).
   */
  probe?: () => Promise<ProbeFigures>;
  /** With the probe: CPU-profile the nodes from `start` to `stop` (files `<prefix>.node<i>.cpuprofile`). */
  profile?: (action: 'start' | 'stop', prefix?: string) => Promise<string[]>;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

function baseEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' };
}

interface Spawned {
  child: ChildProcess;
  output: string[];
  exited: Promise<void>;
}

/**
 * Every server process started here and not yet exited. A tool stopped by a signal stops them all
 * (`stopSpawned`): a server still starting belongs to no `Target` yet, and it used to outlive the tool.
 */
const spawned = new Set<ChildProcess>();

/** SIGTERM to every server process started here that is still running, SIGKILL after `graceMs`. */
export async function stopSpawned(graceMs = 5_000): Promise<void> {
  await Promise.all(
    [...spawned].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
          child.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          child.kill('SIGTERM');
        }),
    ),
  );
}

function spawnNode(args: string[], env: NodeJS.ProcessEnv, ipc = false): Spawned {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
    cwd: ROOT,
    env,
    stdio: ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
  });
  spawned.add(child);
  child.once('exit', () => spawned.delete(child));
  const output: string[] = [];
  const keep = (chunk: string) => {
    output.push(chunk);
    if (output.length > 200) output.splice(0, output.length - 200);
  };
  child.stdout?.setEncoding('utf8').on('data', keep);
  child.stderr?.setEncoding('utf8').on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, output, exited };
}

async function stopChild(s: Spawned, graceMs = 10_000): Promise<void> {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return;
  s.child.kill('SIGTERM');
  const timer = setTimeout(() => s.child.kill('SIGKILL'), graceMs);
  await s.exited;
  clearTimeout(timer);
}

/** Waits for `GET <url>/readyz` (draw-chat) or a TCP listen (baselines print their URL). */
async function waitReady(url: string, s: Spawned, path: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (s.child.exitCode !== null) throw new Error(`server exited during start-up:\n${s.output.join('')}`);
    try {
      const res = await fetch(url + path);
      if (res.ok) return;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server not ready within ${timeoutMs} ms:\n${s.output.join('')}`);
}

async function waitUrlLine(s: Spawned, timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const m = /\{"url":"(http:\/\/[^"]+)"/.exec(s.output.join(''));
    if (m) return m[1]!;
    if (s.child.exitCode !== null) throw new Error(`baseline exited:\n${s.output.join('')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`baseline did not listen within ${timeoutMs} ms:\n${s.output.join('')}`);
}

export interface DrawChatOptions {
  /** `sqlite` (a fresh file in a temp dir), or a `postgres://` URL, or `sqlite:<path>` of a seeded file. */
  database: string;
  nodes?: number;
  /** Needed for more than one node. */
  redisUrl?: string;
  /** Dev-auth key directory shared with the token mint. */
  keysDir: string;
  /** The draw instant of the session (all nodes must agree); default an hour from now. */
  drawTime?: number;
  /** Write a V8 CPU profile of each node into this directory at exit. */
  cpuProfDir?: string;
  /** Count database statements and signature checks (bench/lib/probe.ts). */
  probe?: boolean;
  /** Run the compiled server (dist/main.js, after `npm run build:server`) instead of tsx. */
  compiled?: boolean;
  /** Run with the fan-out code from before the performance work (bench/before/, see bench/lib/before.ts). */
  before?: boolean;
  env?: Record<string, string>;
  label?: string;
}

/** Settings that let one machine play thousands of users (SPEC §7 says load tests set them very high). */
export const LOAD_TEST_ENV: Record<string, string> = {
  LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE: '1000000',
  LIVE_CHAT_MAX_CONNECTS_PER_ADDRESS_PER_MINUTE: '100000000',
  LIVE_CHAT_MAX_CONNECTIONS_PER_USER: '100',
  LOG_LEVEL: 'warn',
};

/** The draw and window a benchmark session uses: open now, for two hours. */
export function benchWindow(drawTime = Math.ceil((Date.now() + 3_600_000) / 60_000) * 60_000) {
  return { drawTime, startsAt: drawTime - 2 * 3_600_000, endsAt: drawTime + 3_600_000 };
}

export async function startDrawChat(o: DrawChatOptions): Promise<Target> {
  const nodes = o.nodes ?? 1;
  if (nodes > 1 && !o.redisUrl) throw new Error('several nodes need --redis');
  let tmp: string | undefined;
  let databaseUrl = o.database;
  if (databaseUrl === 'sqlite') {
    tmp = mkdtempSync(join(tmpdir(), 'drawchat-bench-'));
    databaseUrl = `sqlite:${join(tmp, 'chat.db')}`;
  }
  const drawTime = o.drawTime ?? benchWindow().drawTime;
  const env: NodeJS.ProcessEnv = {
    ...baseEnv(),
    ...LOAD_TEST_ENV,
    DATABASE_URL: databaseUrl,
    DATA_DIR: o.keysDir,
    HOST: '127.0.0.1',
    DRAW_TIMES: new Date(drawTime).toISOString(),
    LIVE_CHAT_PRE_DRAW_HOURS: '2',
    LIVE_CHAT_POST_DRAW_HOURS: '1',
    ...(o.redisUrl
      ? { REDIS_URL: o.redisUrl, REDIS_KEY_PREFIX: `drawchat-bench-${randomBytes(4).toString('hex')}:` }
      : {}),
    ...o.env,
  };
  const procs: Spawned[] = [];
  const urls: string[] = [];
  try {
    for (let i = 0; i < nodes; i++) {
      const port = await freePort();
      const args = [
        ...(o.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', o.cpuProfDir] : []),
        ...(o.probe ? ['--import', './bench/lib/probe.ts'] : []),
        ...(o.before ? ['--import', './bench/lib/before.ts'] : []),
        o.compiled ? 'dist/main.js' : 'src/main.ts',
      ];
      const s = spawnNode(args, { ...env, PORT: String(port) }, o.probe);
      procs.push(s);
      const url = `http://127.0.0.1:${port}`;
      urls.push(url);
      // The first node migrates the database; the others start after it.
      await waitReady(url, s, '/readyz');
    }
  } catch (err) {
    await Promise.all(procs.map((p) => stopChild(p)));
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  return {
    kind: 'drawchat',
    label: o.label ?? `draw-chat${nodes > 1 ? ` ×${nodes}` : ''}`,
    urls,
    pids: procs.map((p) => p.child.pid!),
    probe: o.probe
      ? async () => {
          const all = await Promise.all(procs.map((p) => askProbe(p.child)));
          return {
            dbQueries: all.reduce((n, c) => n + c.dbQueries, 0),
            dbOutsideTx: all.reduce((n, c) => n + c.dbOutsideTx, 0),
            signatureChecks: all.reduce((n, c) => n + c.signatureChecks, 0),
            loop: {
              p50: Math.max(...all.map((c) => c.loop.p50)),
              p99: Math.max(...all.map((c) => c.loop.p99)),
              max: Math.max(...all.map((c) => c.loop.max)),
            },
          };
        }
      : undefined,
    profile: o.probe
      ? async (action, prefix = join(tmpdir(), `drawchat-${Date.now()}`)) => {
          const files = procs.map((_, i) => `${prefix}.node${i + 1}.cpuprofile`);
          if (action === 'start') {
            for (const p of procs) p.child.send({ profile: 'start' });
            return [];
          }
          await Promise.all(
            procs.map(
              (p, i) =>
                new Promise<void>((resolve) => {
                  const onMessage = (m: unknown) => {
                    if ((m as { profiled?: unknown }).profiled === undefined) return;
                    p.child.off('message', onMessage);
                    resolve();
                  };
                  p.child.on('message', onMessage);
                  p.child.send({ profile: 'stop', file: files[i] });
                }),
            ),
          );
          return files;
        }
      : undefined,
    async stop() {
      await Promise.all(procs.map((p) => stopChild(p)));
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    },
  };
}

function askProbe(child: ChildProcess): Promise<ProbeFigures> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('probe did not answer')), 5000);
    const onMessage = (m: unknown) => {
      const p = (m as { probe?: ProbeFigures }).probe;
      if (!p) return;
      clearTimeout(timer);
      child.off('message', onMessage);
      resolve(p);
    };
    child.on('message', onMessage);
    child.send('probe');
  });
}

export async function startWsBaseline(o: { batchMs: number; jwksFile?: string; label?: string }) {
  const args = ['bench/baselines/ws-broadcast.ts', '--batch', String(o.batchMs)];
  if (o.jwksFile) args.push('--jwks', o.jwksFile);
  const s = spawnNode(args, baseEnv());
  const url = await waitUrlLine(s).catch(async (err) => {
    await stopChild(s);
    throw err;
  });
  return {
    kind: 'ws',
    label: o.label ?? (o.batchMs > 0 ? `ws batch ${o.batchMs} ms` : 'ws per message'),
    urls: [url],
    pids: [s.child.pid!],
    stop: () => stopChild(s),
  } satisfies Target as Target;
}

export async function startSocketIoBaseline(o: { label?: string } = {}): Promise<Target> {
  const s = spawnNode(['bench/baselines/socketio.ts'], baseEnv());
  const url = await waitUrlLine(s).catch(async (err) => {
    await stopChild(s);
    throw err;
  });
  return {
    kind: 'socketio',
    label: o.label ?? 'Socket.IO',
    urls: [url],
    pids: [s.child.pid!],
    stop: () => stopChild(s),
  };
}

/** An already running draw-chat (`--url`): sampled through `/metrics`. */
export function externalDrawChat(urls: string[]): Target {
  return { kind: 'drawchat', label: 'draw-chat', urls, pids: [], stop: async () => {} };
}

// ------------------------------------------------------------------ process figures

const CLK_TCK = 100;

/**
 * CPU seconds (user + system) and resident bytes of local processes, from /proc; and how long their main threads
 * were runnable but waiting for a CPU (`schedstat`): on a shared machine, the share of time other work took.
 */
export function procSample(pids: number[]): { cpuSeconds: number; rssBytes: number; waitSeconds: number } {
  let cpu = 0;
  let rss = 0;
  let wait = 0;
  for (const pid of pids) {
    try {
      const sched = readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ');
      wait += Number(sched[1]) / 1e9;
    } catch {
      // no schedstat (kernel without it) or gone
    }
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      cpu += (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const m = /VmRSS:\s+(\d+) kB/.exec(status);
      if (m) rss += Number(m[1]) * 1024;
    } catch {
      // gone
    }
  }
  return { cpuSeconds: cpu, rssBytes: rss, waitSeconds: wait };
}

/**
 * Starts measuring the CPU time (user + system) of `pids`; the function returned gives what they spent since, in
 * µs per item for `count` items (e.g. per handshake of a connect phase).
 */
export function cpuMeter(pids: number[]): (count: number) => number {
  const start = procSample(pids).cpuSeconds;
  return (count) => Math.round(((procSample(pids).cpuSeconds - start) * 1e6) / Math.max(1, count));
}

/** The same figures from draw-chat's `/metrics` (remote targets). */
export async function metricsSample(
  urls: string[],
): Promise<{ cpuSeconds: number; rssBytes: number; waitSeconds: number }> {
  let cpu = 0;
  let rss = 0;
  for (const url of urls) {
    const text = await (await fetch(`${url}/metrics`)).text();
    cpu += Number(/^drawchat_process_cpu_seconds_total (\S+)/m.exec(text)?.[1] ?? 0);
    rss += Number(/^drawchat_process_resident_memory_bytes (\S+)/m.exec(text)?.[1] ?? 0);
  }
  return { cpuSeconds: cpu, rssBytes: rss, waitSeconds: 0 };
}

export async function sampleTarget(
  t: Target,
): Promise<{ cpuSeconds: number; rssBytes: number; waitSeconds: number }> {
  if (t.pids.length > 0) return procSample(t.pids);
  return metricsSample(t.urls).catch(() => ({ cpuSeconds: 0, rssBytes: 0, waitSeconds: 0 }));
}

/** A draw-chat metric's value summed over nodes (counters and gauges without labels, or the sum over labels). */
export async function metricValue(urls: string[], name: string): Promise<number> {
  let total = 0;
  for (const url of urls) {
    const text = await (await fetch(`${url}/metrics`)).text();
    for (const line of text.split('\n')) {
      if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) total += Number(line.split(' ').at(-1));
    }
  }
  return total;
}

/** A Prometheus histogram of draw-chat, summed over nodes: count, mean and bucket-bound quantiles (in its unit). */
export async function metricHistogram(
  urls: string[],
  name: string,
): Promise<{ count: number; mean: number; p50: number; p99: number }> {
  const buckets = new Map<number, number>();
  let count = 0;
  let total = 0;
  for (const url of urls) {
    const text = await (await fetch(`${url}/metrics`)).text();
    for (const line of text.split('\n')) {
      const b = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)`).exec(line);
      if (b) {
        const le = b[1] === '+Inf' ? Number.POSITIVE_INFINITY : Number(b[1]);
        buckets.set(le, (buckets.get(le) ?? 0) + Number(b[2]));
      } else if (line.startsWith(`${name}_count `)) count += Number(line.split(' ')[1]);
      else if (line.startsWith(`${name}_sum `)) total += Number(line.split(' ')[1]);
    }
  }
  const sorted = [...buckets.entries()].sort((a, b) => a[0] - b[0]);
  const q = (p: number) => sorted.find(([, c]) => c >= p * count)?.[0] ?? Number.NaN;
  return { count, mean: count ? total / count : 0, p50: q(0.5), p99: q(0.99) };
}
