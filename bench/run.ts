/**
 * `npm run bench [-- --smoke] [-- --only fanout,ingest,…]`: the fixed benchmark suite. Each scenario runs against
 * draw-chat and, where the issue compares, against the two baselines in bench/baselines/, in the same run on
 * the same machine. Prints the figures with ratios and verdicts, and writes bench/results/<ISO date>.json,
 * .md (the summary used in docs/BENCHMARKS.md) and .html (charts; not committed).
 */
import { execSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import {
  type ConnectPlan,
  type ConnectResult,
  Generator,
  type TimePoint,
  type WindowStats,
} from './lib/generator.js';
import { median } from './lib/hist.js';
import { historyLoad } from './lib/http-load.js';
import { freshPostgres, postgresReachable } from './lib/pg.js';
import { machineInfo, type ReportRun, writeHtmlReport } from './lib/report.js';
import { seedHistory } from './lib/seed.js';
import {
  activeSessionId,
  fmt,
  type LoadContext,
  Progress,
  type RateStep,
  searchRate,
  sessionTotals,
  sleep,
  withLoad,
} from './lib/session.js';
import {
  benchWindow,
  cpuMeter,
  metricHistogram,
  metricValue,
  procSample,
  ROOT,
  startDrawChat,
  startSocketIoBaseline,
  startWsBaseline,
  stopSpawned,
  type Target,
} from './lib/targets.js';
import { TokenMint } from './lib/tokens.js';

const { values } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    only: { type: 'string' },
    out: { type: 'string' },
    workers: { type: 'string' },
    redis: { type: 'string', default: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
    before: { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
    'profile-storm': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  process.stdout.write(
    'usage: npm run bench [-- --smoke] [-- --only fanout,hearts,storm,handshakes,ingest,scale,history] [-- --out DIR] [-- --before] [-- --cpu-prof DIR]\n' +
      '  --cpu-prof DIR writes a V8 CPU profile of the draw-chat fan-out server (the whole run) into DIR\n' +
      '  --profile-storm P profiles only the reconnect storms: P-warm.node1.cpuprofile, P-cold.node1.cpuprofile\n' +
      '  --before also runs draw-chat with the fan-out code from before the performance work (bench/before/)\n',
  );
  process.exit(0);
}

const smoke = values.smoke;
/** Sizes of the full suite (issue figures) and of the smoke mode (CI: it runs and the result is well formed). */
const P = smoke
  ? {
      viewers: 200,
      senders: 20,
      full: 0.05,
      sample: 0.2,
      concurrency: 50,
      settleMs: 300,
      stepS: 1.5,
      bisections: 0,
      fanoutStart: { batch: 20, perMessage: 20 },
      fanoutMin: 20,
      fanoutMax: 20,
      hearts: 1000,
      heartsS: 1.5,
      heartMsgRate: 10,
      stormJitterMs: 300,
      stormMsgRate: 10,
      ingestSenders: 20,
      ingestStart: 100,
      ingestMax: 100,
      ingestWarmS: 0.5,
      scaleRate: 10,
      scaleStep: 100,
      scaleMax: 100,
      scaleHoldS: 1.5,
      scaleWarmS: 1,
      historyMessages: 5_000,
      historyS: 1,
      generatorWarmS: 1,
      handshakeWarm: 100,
      handshakeMeasured: 100,
      handshakeRounds: 1,
    }
  : {
      viewers: 5000,
      senders: 200,
      full: 0.02,
      sample: 0.1,
      concurrency: 100,
      settleMs: 3000,
      // Judged on the last 5 s of each 6 s step. With 2 s of 3, one stall of about 100 ms (a collection, a
      // checkpoint, a core taken away) in the window decided the step: six runs of nearly the same code read 0.67×
      // to 1.18× of the batched baseline (2026-11-26 05:04–05:45, docs/BENCHMARKS.md).
      stepS: 6,
      // Two bisections: rates resolved to within 2^(1/4) ≈ 1.19× (one left them 1.41× apart, so a ratio of two
      // searches could only read 0.5, 0.71 or 1).
      bisections: 2,
      fanoutStart: { batch: 100, perMessage: 4 },
      fanoutMin: 1,
      fanoutMax: 20_000,
      // More than the 50k/s to be absorbed (11 a second per viewer; the per-user limit is 20): the figure is what
      // the server absorbed, so the offer must not be the ceiling.
      hearts: 55_000,
      heartsS: 8,
      heartMsgRate: 50,
      stormJitterMs: 1000,
      stormMsgRate: 20,
      ingestSenders: 150,
      ingestStart: 500,
      ingestMax: 8000,
      ingestWarmS: 4,
      scaleRate: 10,
      scaleStep: 1000,
      // Per node: high enough that one node reaches its limit on this machine (it carried all of 9,000).
      scaleMax: 15_000,
      // Each step is judged on its last 2 s: its 1,000 joins (at ~2,000 a second, a storm to the hub, whose ticks
      // space out for up to a second after, see HubOptions.stormJoinsPerSecond) are over by then.
      scaleHoldS: 4,
      scaleWarmS: 2,
      // The load generator's own warm-up before the first measured server (see warmGenerator).
      generatorWarmS: 4,
      historyMessages: 1_000_000,
      historyS: 5,
      // The handshake phase (section 1b): per server, this many users first, then this many measured,
      // in this many rounds of each target, alternating.
      handshakeWarm: 5000,
      handshakeMeasured: 5000,
      handshakeRounds: 3,
    };
const P99_LIMIT_MS = 250;
const workers = values.workers ? Number(values.workers) : Generator.defaultWorkers();
const only = values.only ? new Set(values.only.split(',')) : undefined;
const wanted = (s: string) => !only || only.has(s);

const progress = new Progress();
const startedAt = new Date();
const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
const outDir = values.out ?? join(ROOT, 'bench', 'results');
const reportRuns: ReportRun[] = [];
const machineAtStart = machineInfo();
const base = join(outDir, smoke ? `smoke-${stamp}` : stamp);
let git: { commit: string; dirty: boolean } | undefined;
try {
  git = {
    commit: execSync('git rev-parse --short HEAD', { cwd: ROOT }).toString().trim(),
    dirty: execSync('git status --porcelain', { cwd: ROOT }).toString().trim() !== '',
  };
} catch {
  git = undefined;
}

interface Verdict {
  id: string;
  target: string;
  goal: string;
  measured: string;
  /** The figure the verdict is about (a ratio where the goal is one, else the measured value). */
  value: number;
  ratio: number | null;
  verdict: 'pass' | 'miss' | 'skipped';
  note?: string;
}
const verdicts: Verdict[] = [];
const scenarios: Record<string, unknown> = {};

function verdict(v: Omit<Verdict, 'verdict'> & { ok: boolean | null }): void {
  const { ok, ...rest } = v;
  verdicts.push({ ...rest, verdict: ok === null ? 'skipped' : ok ? 'pass' : 'miss' });
}

const round = (n: number, d = 1) => (Number.isFinite(n) ? Math.round(n * 10 ** d) / 10 ** d : 0);

function windowFigures(w: WindowStats) {
  return {
    deliveriesPerSecond: round(w.deliveriesPerSecond, 0),
    messagesPerSecond: round(w.sentPerSecond),
    ackedPerSecond: round(w.ackedPerSecond),
    framesPerSecond: round(w.framesPerSecond, 0),
    mbPerSecond: round(w.bytesPerSecond / 1e6, 2),
    latencyMs: w.latency,
    ackMs: w.ack,
    serverCpuPercent: round(w.cpuPercent, 0),
    /** Runnable but waiting for a CPU (other work on this machine), % of the time. */
    serverCpuWaitPercent: round(w.serverCpuWaitPercent, 0),
    serverEventLoopDelayMs: { p99: w.serverLoopP99, max: w.serverLoopMax },
    /** Server CPU per delivered message: an efficiency figure less sensitive to other load on the machine. */
    serverCpuUsPerDelivery:
      w.deliveriesPerSecond > 0 ? round((w.cpuPercent / 100 / w.deliveriesPerSecond) * 1e6, 2) : 0,
    generatorCpuPercent: round(w.genCpuPercent, 0),
    serverRssMB: round(w.rssMB),
    ready: round(w.ready, 0),
    errors: w.errors,
    closes: w.closes,
  };
}

/**
 * A fan-out step passes when all `viewers` are connected, p99 ≤ 250 ms, every message reaches (nearly) every viewer
 * and nobody is cut off.
 */
function fanoutCheck(w: WindowStats, rate: number, viewers: number): string | null {
  // Connections that have their `init`, on average over the window (a few may be resuming after a failed step).
  if (w.ready < 0.99 * viewers) return `only ${fmt(w.ready)} of ${fmt(viewers)} viewers connected`;
  if (w.latency.count === 0) return 'no latency samples';
  if (w.sentPerSecond < 0.9 * rate - 2) return `the generator sent only ${round(w.sentPerSecond)}/s`;
  if (w.latency.p99 > P99_LIMIT_MS) return `p99 ${w.latency.p99} ms`;
  // Every message sent in the window reaches every connection: at least 95 %, less one message's deliveries
  // (a message sent at the window's end is delivered after it: at 4 msg/s that alone is 1/20 of a 5 s window).
  const expected = Math.min(rate, w.sentPerSecond) * w.ready;
  const edge = w.ready / Math.max(1, P.stepS - 1);
  if (w.deliveriesPerSecond < 0.95 * expected - edge)
    return `deliveries ${fmt(w.deliveriesPerSecond)}/s < 95% of ${fmt(expected)}/s less one message`;
  const cut = w.closes['4408'] ?? 0;
  if (cut > 0) return `${cut} slow-consumer cut-offs`;
  return null;
}

function stepsSummary(steps: RateStep[]) {
  return steps.map((s) => ({
    rate: s.rate,
    pass: s.pass,
    why: s.why,
    deliveriesPerSecond: round(s.window.deliveriesPerSecond, 0),
    p99: s.window.latency.p99,
    cpu: round(s.window.cpuPercent, 0),
    genCpu: round(s.window.genCpuPercent, 0),
  }));
}

/** Servers and client processes running now: stopped on Ctrl-C too. */
const running = new Set<Target>();
let generator: Generator | undefined;

async function onTarget<T>(start: () => Promise<Target>, fn: (t: Target) => Promise<T>): Promise<T> {
  const t = await start();
  running.add(t);
  try {
    return await fn(t);
  } finally {
    running.delete(t);
    await t.stop();
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    progress.log(`${signal}: stopping servers and client processes`);
    // `stopSpawned` also stops a server still starting, which no `Target` holds yet.
    void Promise.allSettled([
      ...[...running].map((t) => t.stop()),
      generator?.close(),
      stopSpawned(),
    ]).finally(() => process.exit(130));
  });
}

async function redisReachable(url: string): Promise<boolean> {
  const r = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 2000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  r.on('error', () => {});
  try {
    await r.connect();
    await r.ping();
    return true;
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

// ---------------------------------------------------------------------------------------------------------------

const mint = await TokenMint.open();
const maxUsers = Math.max(P.viewers, 2 * P.scaleMax + P.scaleStep, P.handshakeWarm + P.handshakeMeasured);
progress.log(`draw-chat bench (${smoke ? 'smoke' : 'full'}): minting up to ${maxUsers} tokens (cached)…`);
const tokens = await mint.tokens(0, maxUsers);
const [gen, pgOk, redisOk] = await Promise.all([
  Generator.start(workers),
  postgresReachable(),
  redisReachable(values.redis),
]);
generator = gen;
progress.log(
  `PostgreSQL ${pgOk ? 'reachable' : 'NOT reachable'}, Redis ${redisOk ? 'reachable' : 'NOT reachable'}`,
);

// ------------------------------------------------------------------ 1. fan-out, idle memory (+ hearts, storm)

/** A measured connect phase (`measuredConnect`). */
interface HandshakeFigures {
  perSecond: number;
  ok: number;
  failed: number;
  connectP50Ms: number;
  connectP99Ms: number;
  /** CPU time (user + system) of the server and of the generator over the measured connect phase, per handshake. */
  serverCpuUs: number;
  generatorCpuUs: number;
}

/** Connects `plan`'s viewers and measures it: handshakes a second, connect times, CPU per handshake. */
async function measuredConnect(
  ctx: LoadContext,
  plan: ConnectPlan,
): Promise<{ connect: ConnectResult; figures: HandshakeFigures }> {
  const serverCpu = cpuMeter(ctx.target.pids);
  const generatorCpu = cpuMeter(ctx.gen.pids);
  ctx.mon.phase = 'connect';
  const t0 = ctx.mon.now();
  const connect = await ctx.gen.connect(ctx.target, plan);
  const serverCpuUs = serverCpu(connect.ok);
  const generatorCpuUs = generatorCpu(connect.ok);
  await ctx.mon.nextTick();
  const times = ctx.mon.window(t0, ctx.mon.now()).connect;
  return {
    connect,
    figures: {
      perSecond: round(connect.perSecond, 0),
      ok: connect.ok,
      failed: connect.failed,
      connectP50Ms: times.p50,
      connectP99Ms: times.p99,
      serverCpuUs,
      generatorCpuUs,
    },
  };
}

interface FanoutRun {
  label: string;
  /** Of the measured nine tenths, except `ok` and `failed`: every viewer's. */
  handshakes: HandshakeFigures;
  idleKBPerConnection: number;
  sustained: ReturnType<typeof windowFigures> & { rate: number; passed: boolean };
  steps: ReturnType<typeof stepsSummary>;
  fullClients?: { count: number; invalidEvents: number; orderViolations: number };
}

const fanoutTargets: Array<{
  id: string;
  start: () => Promise<Target>;
  batch: boolean;
  startRate: number;
}> = [
  {
    id: 'drawchat',
    start: () =>
      startDrawChat({
        database: 'sqlite',
        keysDir: mint.dir,
        probe: true,
        label: 'draw-chat, batch=1',
        ...(values['cpu-prof'] ? { cpuProfDir: values['cpu-prof'] } : {}),
      }),
    batch: true,
    startRate: P.fanoutStart.batch,
  },
  {
    id: 'drawchat-seed',
    start: () =>
      startDrawChat({
        database: 'sqlite',
        keysDir: mint.dir,
        probe: true,
        label: 'draw-chat, one event per frame (corked)',
      }),
    batch: false,
    startRate: P.fanoutStart.batch,
  },
  ...(values.before
    ? [
        {
          id: 'drawchat-before',
          start: () =>
            startDrawChat({
              database: 'sqlite',
              keysDir: mint.dir,
              probe: true,
              before: true,
              label: 'draw-chat, batch=1, hub before this work',
            }),
          batch: true,
          startRate: P.fanoutStart.batch,
        },
      ]
    : []),
  {
    id: 'ws-batch',
    start: () => startWsBaseline({ batchMs: 100, jwksFile: mint.jwksFile }),
    batch: true,
    startRate: P.fanoutStart.batch,
  },
  {
    id: 'ws',
    start: () => startWsBaseline({ batchMs: 0, jwksFile: mint.jwksFile }),
    batch: false,
    startRate: P.fanoutStart.perMessage,
  },
  { id: 'socketio', start: () => startSocketIoBaseline(), batch: false, startRate: P.fanoutStart.perMessage },
];

const fanout: Record<string, FanoutRun> = {};
/** The handshake phase's rounds (section 1b, below the fan-out). */
const handshakeRounds: HandshakeRound[] = [];
let heartsResult: Record<string, unknown> | undefined;
let stormResult: Record<string, unknown> | undefined;
let warmStormResult: Record<string, unknown> | undefined;

/** Connects the viewers, measures handshakes and idle memory, then searches the sustainable message rate. */
async function fanoutRun(
  target: Target,
  o: {
    id: string;
    batch: boolean;
    startRate: number;
    label?: string;
    /** Runs after the connect phase, before the rate search. */
    before?: (ctx: LoadContext) => Promise<void>;
    /** Runs after the rate search. */
    after?: (ctx: LoadContext) => Promise<void>;
  },
): Promise<FanoutRun> {
  const label = o.label ?? target.label;
  progress.log(`— fan-out: ${label}, ${P.viewers} viewers`);
  const { result, series } = await withLoad(
    target,
    { generator: gen, label, progress, tickMs: smoke ? 500 : 1000 },
    async (ctx) => {
      // The first tenth of the viewers (the senders among them) connect before anything is measured: what a
      // server loads and compiles for its first connections is paid once, not per connection, and the same
      // warm-up is given to every server. Handshakes and memory are measured on the other nine tenths.
      ctx.mon.phase = 'warm-up';
      const warmCount = Math.max(P.senders, Math.round(P.viewers / 10));
      const shared = { fullShare: P.full, sampleShare: P.sample, batch: o.batch, concurrency: P.concurrency };
      const warm = await ctx.gen.connect(target, {
        ...shared,
        viewers: warmCount,
        senders: P.senders,
        tokens: tokens.slice(0, warmCount),
      });
      await sleep(P.settleMs);
      const idle = procSample(target.pids);
      const { connect, figures } = await measuredConnect(ctx, {
        ...shared,
        viewers: P.viewers - warmCount,
        senders: 0,
        tokens: tokens.slice(warmCount, P.viewers),
        offset: warmCount,
      });
      ctx.mon.phase = 'idle';
      await sleep(P.settleMs);
      const loaded = procSample(target.pids);
      // Memory per idle connection: what the measured nine tenths added, each already answered with its `init`.
      const kb = (loaded.rssBytes - idle.rssBytes) / 1024 / Math.max(1, connect.ok);
      progress.log(
        `  ${warm.ok} + ${connect.ok} connected, the ${connect.ok} at ${fmt(connect.perSecond)}/s (p99 ${figures.connectP99Ms} ms), idle ${kb.toFixed(1)} KB per connection`,
      );
      await o.before?.(ctx);
      const search = wanted('fanout')
        ? await searchRate(ctx, {
            start: o.startRate,
            stepS: P.stepS,
            bisections: P.bisections,
            min: P.fanoutMin,
            max: P.fanoutMax,
            check: (w, rate) => fanoutCheck(w, rate, P.viewers),
            viewers: P.viewers,
            finalDrain: !smoke,
          })
        : { best: undefined, steps: [] as RateStep[] };
      // No step passed (an overloaded machine): the best step is still reported, marked as not sustained.
      const best =
        search.best ??
        [...search.steps].sort((a, b) => b.window.deliveriesPerSecond - a.window.deliveriesPerSecond)[0];
      const run: FanoutRun = {
        label,
        handshakes: { ...figures, ok: warm.ok + connect.ok, failed: warm.failed + connect.failed },
        idleKBPerConnection: round(kb),
        sustained: {
          rate: best?.rate ?? 0,
          passed: search.best !== undefined,
          ...windowFigures(best?.window ?? ctx.mon.window(0, 0)),
        },
        steps: stepsSummary(search.steps),
      };
      if (search.steps.length > 0) {
        progress.log(
          `  sustained ${fmt(run.sustained.deliveriesPerSecond)} deliveries/s at ${run.sustained.rate} msg/s (p99 ${run.sustained.latencyMs.p99} ms)`,
        );
      }
      await o.after?.(ctx);
      const final = await ctx.gen.final();
      run.fullClients = {
        count: final.fullClients,
        invalidEvents: final.invalidEvents,
        orderViolations: final.orderViolations,
      };
      return run;
    },
  );
  reportRuns.push({
    title: `Fan-out: ${result.label}, ${P.viewers} viewers`,
    series,
    notes: [
      `handshakes ${result.handshakes.perSecond}/s; idle ${result.idleKBPerConnection} KB per connection`,
      `sustained ${result.sustained.deliveriesPerSecond} deliveries/s at ${result.sustained.rate} msg/s, p99 ${result.sustained.latencyMs.p99} ms`,
      ...result.steps.map((s) => `step ${s.rate} msg/s: ${s.pass ? 'pass' : `fail (${s.why})`}`),
    ],
  });
  return result;
}

/**
 * The generator's client processes live through the whole suite, and their code is compiled while they run: the
 * first server measured used to meet a cold generator. In the run of 14:23 the first (draw-chat, batch=1) cost the
 * generator 224 µs of CPU per handshake, and the same handshake later in the run 136–140 µs; the two share the
 * machine's two cores, so the first server's handshakes and rates were measured against a busier generator. A
 * server that is then thrown away takes the same kind of load first (connect, messages, drain); nothing of it is
 * measured, and every server measured after it meets a warm generator.
 */
async function warmGenerator(): Promise<void> {
  progress.log(
    `— warming the load generator up: ${P.viewers} viewers, ${P.generatorWarmS} s of messages (not measured)`,
  );
  await onTarget(
    () => startDrawChat({ database: 'sqlite', keysDir: mint.dir, label: 'generator warm-up' }),
    async (target) => {
      target.sessionId = await activeSessionId(target.urls[0]!, tokens[0]!);
      await withLoad(target, { generator: gen, label: 'generator warm-up', progress }, async (ctx) => {
        await ctx.gen.connect(target, {
          fullShare: P.full,
          sampleShare: P.sample,
          batch: true,
          concurrency: P.concurrency,
          viewers: P.viewers,
          senders: P.senders,
          tokens: tokens.slice(0, P.viewers),
        });
        await ctx.hold(P.fanoutStart.batch, P.generatorWarmS);
        await ctx.drain();
      });
    },
  );
}

if (wanted('fanout') || wanted('hearts') || wanted('storm')) {
  await warmGenerator();
  const specs = fanoutTargets.filter((spec) => spec.id === 'drawchat' || wanted('fanout'));
  // Smoke mode starts the next server while the current one is measured (its figures do not matter there, the
  // minutes do); the full suite starts each server on an otherwise idle machine.
  const early = new Map<string, Promise<Target>>();
  const track = (p: Promise<Target>) => {
    void p.then((t) => running.add(t)).catch(() => {});
    return p;
  };
  for (const [i, spec] of specs.entries()) {
    const next = specs[i + 1];
    const start = () => {
      const t = early.get(spec.id) ?? spec.start();
      if (smoke && next) early.set(next.id, track(next.start()));
      return t;
    };
    await onTarget(start, async (target) => {
      if (target.kind === 'drawchat') target.sessionId = await activeSessionId(target.urls[0]!, tokens[0]!);
      fanout[spec.id] = await fanoutRun(target, {
        ...spec,
        before:
          spec.id === 'drawchat' && wanted('storm')
            ? async (ctx) => {
                warmStormResult = await stormPhase(ctx, target, 'warm');
              }
            : undefined,
        after:
          spec.id === 'drawchat'
            ? async (ctx) => {
                // The storm first: the heart storm leaves the server a backlog to work off.
                if (wanted('storm')) stormResult = await stormPhase(ctx, target, 'cold');
                if (wanted('hearts')) heartsResult = await heartsPhase(ctx, target);
              }
            : undefined,
      });
    });
  }
}

async function heartsPhase(ctx: LoadContext, target: Target): Promise<Record<string, unknown>> {
  const url = target.urls[0]!;
  progress.log(
    `— hearts: ${fmt(P.hearts)}/s from ${P.viewers} viewers for ${P.heartsS} s, with ${P.heartMsgRate} msg/s`,
  );
  const before = await sessionTotals(url, tokens[0]!);
  const started = performance.now();
  const t0 = ctx.mon.now();
  // Sending stops when the phase's seconds are up (`stop`), however far behind the server is: the load offered is
  // the phase's, not stretched by a monitor tick that waits for a late server (machine 13: 8 s of hearts became
  // about 100 s of sending).
  const w = await ctx.hold(P.heartMsgRate, P.heartsS, {
    hearts: P.hearts,
    phase: 'hearts',
    warmS: 1,
    stop: true,
  });
  const sentEnded = started + P.heartsS * 1000;
  // Every heart counted: the session total, read every 100 ms, has not moved for a second, and the server has read
  // everything its sockets held (its read lag is 0: its event loop has had a pause since); `stableAt` is when the
  // total was first seen at its final value. A server that fell far behind (machine 13: about 40 s) showed a total
  // that stood still for a second right after a stall of its loop, while hearts may still have waited in its
  // sockets: 621 short, "NOT exact", and no way to tell unread from lost. The deadline is long enough for such a
  // server to catch up; past it, the result says it had not (`caughtUp`).
  let last = -1;
  let total = before.totalLikes;
  const deadline = performance.now() + 120_000;
  let stableAt = performance.now();
  let readLagS = Number.NaN;
  while (performance.now() < deadline) {
    total = (await sessionTotals(url, tokens[0]!)).totalLikes;
    readLagS = await metricValue(target.urls, 'drawchat_read_lag_seconds');
    if (total !== last) {
      last = total;
      stableAt = performance.now();
    } else if (performance.now() - stableAt >= 1000 && readLagS === 0) {
      break;
    }
    await sleep(100);
  }
  const caughtUp = readLagS === 0 && performance.now() - stableAt >= 1000;
  await ctx.drain(3000);
  // The messages' latency covers every delivery of the phase's messages, also those that came after sending
  // stopped: a server behind delivers them late, and leaving them out would flatter it.
  const whole = ctx.mon.window(t0 + 1, ctx.mon.now());
  const final = await ctx.gen.final();
  const counted = total - before.totalLikes;
  const accepted = final.heartsSent - final.heartsRefused;
  const absorbSeconds = (stableAt - started) / 1000;
  const result = {
    offeredPerSecond: P.hearts,
    /** The phase's seconds of sending. */
    sendingS: P.heartsS,
    /** Hearts the generator sent over the phase's seconds (it stops when they are up). */
    sentPerSecond: round(final.heartsSent / P.heartsS, 0),
    sent: final.heartsSent,
    refused: final.heartsRefused,
    countedInDatabase: counted,
    exact: counted === accepted,
    countedPerSecond: round(counted / absorbSeconds, 0),
    absorbSeconds: round(absorbSeconds, 2),
    drainAfterSendingS: round((stableAt - sentEnded) / 1000, 2),
    /** The server had read everything and committed it when the total was taken (see above). */
    caughtUp,
    likeUpdatesPerViewer: {
      /** Updates the busiest viewer got from the first heart until every heart was counted. */
      received: final.likeUpdatesReceivedMax,
      maxFrequencyPerSecond: round(final.likeUpdatesMaxAvgPerSecond, 2),
      maxInOneSecond: final.likeUpdatesMaxPerSecond,
      windowS: round(final.likeUpdateWindowS, 1),
    },
    messages: { ...windowFigures(w), latencyMs: whole.latency, ackMs: whole.ack },
  };
  progress.log(
    `  ${fmt(result.sent)} hearts sent, ${result.refused} refused, ${fmt(counted)} counted (${result.exact ? 'exact' : 'NOT exact'}${caughtUp ? '' : ', the server had not caught up'}), ` +
      `${fmt(result.countedPerSecond)}/s; like-count updates ≤ ${result.likeUpdatesPerViewer.maxFrequencyPerSecond}/s per viewer; message p99 ${whole.latency.p99} ms`,
  );
  return result;
}

/**
 * Every viewer dropped at once and back with `since`. `warm`: right after the connect phase, while the server
 * still has every profile cached (its user cache keeps them a minute); `cold`: after minutes of chat, as in a
 * real draw, when each comeback re-reads its user.
 */
async function stormPhase(
  ctx: LoadContext,
  target: Target,
  kind: 'warm' | 'cold',
): Promise<Record<string, unknown>> {
  progress.log(
    `— reconnect storm (${kind}): ${P.viewers} viewers dropped at once, back within ${P.stormJitterMs} ms each`,
  );
  ctx.gen.setRates(P.stormMsgRate, 0);
  ctx.mon.offered = P.stormMsgRate;
  ctx.mon.phase = 'storm';
  await sleep(2000);
  // Everyone connected first: a search that overloaded the server leaves viewers resuming for a while (see
  // `searchRate`), and a storm on top of them measured their late comebacks too (p99 29.5 s at 08:36).
  const rejoinedS = await ctx.rejoin(P.viewers, 60_000);
  if (Number.isNaN(rejoinedS)) progress.log(`  not all ${P.viewers} viewers were connected before the storm`);
  if (values['profile-storm']) await target.profile?.('start');
  const q0 = await target.probe!();
  const c0 = (await metricHistogram(target.urls, 'drawchat_commit_seconds')).count;
  const dropAt = performance.now();
  const tBefore = ctx.mon.now();
  await ctx.gen.drop(P.stormJitterMs);
  // Only ticks asked for after every client process dropped its clients count.
  const allBackS = await ctx.rejoin(P.viewers, 60_000, { from: dropAt, after: ctx.mon.now() });
  const q1 = await target.probe!();
  if (values['profile-storm']) {
    const files = (await target.profile?.('stop', `${values['profile-storm']}-${kind}`)) ?? [];
    progress.log(`  profiled the storm: ${files.join(', ')}`);
  }
  const c1 = (await metricHistogram(target.urls, 'drawchat_commit_seconds')).count;
  const w = ctx.mon.window(tBefore, ctx.mon.now());
  await ctx.drain(3000);
  const resumes = w.resumed;
  const queries = q1.dbQueries - q0.dbQueries;
  const reads = q1.dbOutsideTx - q0.dbOutsideTx;
  const result = {
    kind,
    viewers: P.viewers,
    jitterMs: P.stormJitterMs,
    messagesPerSecondDuring: P.stormMsgRate,
    /** Seconds waited for every viewer to be connected before the drop (`null`: they were not, after 60 s). */
    connectedBeforeS: Number.isNaN(rejoinedS) ? null : round(rejoinedS, 1),
    allResumedWithinS: round(allBackS, 1),
    resumed: resumes,
    resumeMs: w.connect,
    databaseStatements: queries,
    groupCommits: c1 - c0,
    statementsPerResume: round(queries / Math.max(1, resumes), 3),
    statementsOutsideGroupCommits: reads,
    readsPerResume: round(reads / Math.max(1, resumes), 3),
    signatureChecks: q1.signatureChecks - q0.signatureChecks,
    // Everything the probe counted before the storm: the connect phase's new tokens, one check each. It shows
    // that the probe sees the server's checks, so that the 0 of the storm means something.
    signatureChecksBefore: q0.signatureChecks,
    messageLatencyMs: w.latency,
    closes: w.closes,
    errors: w.errors,
  };
  progress.log(
    `  ${resumes} resumed, ${result.allResumedWithinS > 0 ? `all back after ${result.allResumedWithinS} s` : 'not all back within 60 s'}; resume p99 ${w.connect.p99} ms; ` +
      `${queries} database statements (${result.groupCommits} group commits; ${reads} outside them), ${result.signatureChecks} RS256 checks`,
  );
  return result;
}

if (fanout.drawchat && wanted('fanout')) {
  const dc = fanout.drawchat;
  const ratio = (a: number, b: number | undefined) => (b ? round(a / b, 2) : null);
  const wsb = fanout['ws-batch']?.sustained.deliveriesPerSecond;
  const sio = fanout.socketio?.sustained.deliveriesPerSecond;
  const r1 = ratio(dc.sustained.deliveriesPerSecond, wsb);
  verdict({
    id: 'fanout-vs-ws-batch',
    target: `Fan-out, ${P.viewers} viewers, stored first: deliveries/s vs raw ws batched 100 ms`,
    goal: '≥ 0.8×',
    measured: `${fmt(dc.sustained.deliveriesPerSecond)}/s vs ${fmt(wsb ?? 0)}/s`,
    value: r1 ?? 0,
    ratio: r1,
    ok: r1 === null ? null : r1 >= 0.8,
  });
  const r2 = ratio(dc.sustained.deliveriesPerSecond, sio);
  verdict({
    id: 'fanout-vs-socketio',
    target: `Fan-out, ${P.viewers} viewers: deliveries/s vs Socket.IO io.to(room).emit`,
    goal: '≥ 20×',
    measured: `${fmt(dc.sustained.deliveriesPerSecond)}/s vs ${fmt(sio ?? 0)}/s`,
    value: r2 ?? 0,
    ratio: r2,
    ok: r2 === null ? null : r2 >= 20,
  });
  const seed = fanout['drawchat-seed'];
  if (seed) {
    const r3 = ratio(seed.sustained.deliveriesPerSecond, wsb);
    verdict({
      id: 'fanout-seed-style-vs-ws-batch',
      target: 'Fan-out, one event per frame (seed-style clients, corked): deliveries/s vs raw ws batched',
      goal: '(reported)',
      measured: `${fmt(seed.sustained.deliveriesPerSecond)}/s`,
      value: r3 ?? 0,
      ratio: r3,
      ok: r3 === null ? null : true,
      note: 'no goal of its own; measured because the issue asks for both client kinds',
    });
  }
  const before = fanout['drawchat-before'];
  if (before) {
    const r = ratio(dc.sustained.deliveriesPerSecond, before.sustained.deliveriesPerSecond);
    verdict({
      id: 'fanout-after-vs-before',
      target: 'This work: fan-out deliveries/s, hub after vs before (same run)',
      goal: '(reported)',
      measured: `${fmt(dc.sustained.deliveriesPerSecond)}/s vs ${fmt(before.sustained.deliveriesPerSecond)}/s; handshakes ${fmt(dc.handshakes.perSecond)}/s vs ${fmt(before.handshakes.perSecond)}/s`,
      value: r ?? 0,
      ratio: r,
      ok: r === null ? null : true,
      note: 'no goal of its own',
    });
  }
  const ws = fanout.ws;
  if (ws) {
    const r4 = ratio(dc.idleKBPerConnection, ws.idleKBPerConnection);
    verdict({
      id: 'memory-vs-ws',
      target: 'Idle memory per connection vs raw ws',
      goal: '≤ 1.25×',
      measured: `${dc.idleKBPerConnection} KB vs ${ws.idleKBPerConnection} KB (Socket.IO ${fanout.socketio?.idleKBPerConnection ?? 'n/a'} KB)`,
      value: r4 ?? 0,
      ratio: r4,
      ok: r4 === null ? null : r4 <= 1.25,
    });
  }
}
scenarios.fanout = { viewers: P.viewers, senders: P.senders, runs: fanout };

if (heartsResult) {
  const h = heartsResult as {
    countedPerSecond: number;
    exact: boolean;
    caughtUp: boolean;
    likeUpdatesPerViewer: { maxFrequencyPerSecond: number; received: number };
    /** The chat messages flowing during the storm. */
    messages: { latencyMs: { p50: number; p99: number; count: number } };
  };
  verdict({
    id: 'hearts-rate',
    target: `Hearts absorbed with ${P.viewers} viewers, every heart counted in the database`,
    goal: '≥ 50k/s, exact',
    measured: `${fmt(h.countedPerSecond)}/s, ${h.exact ? 'exact' : 'NOT exact'}${h.caughtUp ? '' : ' (the server had not read everything by the deadline)'}`,
    value: h.countedPerSecond,
    ratio: round(h.countedPerSecond / 50_000, 2),
    ok: h.exact && h.countedPerSecond >= 50_000,
    note: smoke ? `smoke: ${fmt(P.hearts)}/s offered` : undefined,
  });
  verdict({
    id: 'hearts-updates',
    target: 'Like-count updates per viewer during the heart storm',
    goal: '≤ 4/s',
    measured:
      h.likeUpdatesPerViewer.received > 0
        ? `${h.likeUpdatesPerViewer.maxFrequencyPerSecond}/s (busiest viewer, ${h.likeUpdatesPerViewer.received} updates)`
        : 'no update reached the viewers until every heart was counted',
    value: h.likeUpdatesPerViewer.maxFrequencyPerSecond,
    ratio: null,
    ok: h.likeUpdatesPerViewer.received > 0 && h.likeUpdatesPerViewer.maxFrequencyPerSecond <= 4,
  });
  // The issue's "p99 ≤ 250 ms throughout" includes the heart storm: the chat goes on during it.
  const m = h.messages;
  verdict({
    id: 'hearts-messages',
    target: `Chat messages during the heart storm (${P.heartMsgRate} msg/s to all ${P.viewers} viewers)`,
    goal: 'p99 ≤ 250 ms',
    measured:
      m.latencyMs.count > 0
        ? `p50 ${m.latencyMs.p50} ms, p99 ${m.latencyMs.p99} ms`
        : 'no message reached the viewers during the storm',
    value: m.latencyMs.p99,
    ratio: null,
    ok: m.latencyMs.count > 0 && m.latencyMs.p99 <= 250,
  });
  scenarios.hearts = heartsResult;
}

if (stormResult) {
  const s = stormResult as {
    allResumedWithinS: number;
    resumeMs: { p99: number };
    statementsPerResume: number;
    readsPerResume: number;
    groupCommits: number;
    signatureChecks: number;
    signatureChecksBefore: number;
    resumed: number;
  };
  verdict({
    id: 'storm-resume',
    target: `Reconnect storm: ${P.viewers} viewers resume with since`,
    goal: 'all within 10 s, p99 < 2 s',
    measured:
      s.allResumedWithinS > 0
        ? `all back in ${s.allResumedWithinS} s, p99 ${s.resumeMs.p99} ms`
        : `${s.resumed} of ${P.viewers} back within 60 s, p99 ${s.resumeMs.p99} ms`,
    value: s.resumeMs.p99,
    ratio: null,
    ok:
      Number.isFinite(s.allResumedWithinS) &&
      s.allResumedWithinS > 0 &&
      s.allResumedWithinS <= 10 &&
      s.resumeMs.p99 < 2000,
  });
  verdict({
    id: 'storm-queries',
    target: 'Reconnect storm: database reads per resume (history from memory)',
    goal: 'near zero (≤ 0.1)',
    measured:
      `${s.readsPerResume} per resume outside the group commits; ${s.statementsPerResume} with the ` +
      `${s.groupCommits} group commits that stored the ${P.stormMsgRate} msg/s flowing meanwhile`,
    value: s.readsPerResume,
    ratio: null,
    ok: s.readsPerResume <= 0.1,
  });
  verdict({
    id: 'storm-signatures',
    target: 'Reconnect storm: RS256 checks for still-valid tokens (verified-token cache)',
    goal: '0',
    measured: `${s.signatureChecks} for ${s.resumed} resumes (${s.signatureChecksBefore} counted before the storm, for the connect phase's new tokens)`,
    value: s.signatureChecks,
    ratio: null,
    // The probe must have seen the connect phase's checks (one per new token), or its 0 would prove nothing.
    ok: s.signatureChecks === 0 && s.signatureChecksBefore >= P.viewers,
  });
  if (warmStormResult) {
    const w = warmStormResult as typeof s & { databaseStatements: number };
    verdict({
      id: 'storm-warm',
      target: 'Reconnect storm right after connecting (profiles still cached)',
      goal: '(reported)',
      measured: `${w.allResumedWithinS > 0 ? `all back in ${w.allResumedWithinS} s` : `${w.resumed} back within 60 s`}, p99 ${w.resumeMs.p99} ms, ${w.readsPerResume} reads (${w.statementsPerResume} statements) per resume`,
      value: w.resumeMs.p99,
      ratio: null,
      ok: true,
      note: 'no goal of its own: shows what the per-resume profile refresh costs',
    });
  }
  scenarios.storm = { cold: stormResult, warm: warmStormResult };
}
save(false);

// ------------------------------------------------------------------ 1b. handshakes, alternating rounds

/**
 * Handshakes per second and CPU per handshake, on a server that has already taken `handshakeWarm` users, in
 * `handshakeRounds` rounds of draw-chat and of the raw `ws` + RS256 baseline, alternating (A B, B A, A B…), each
 * round on a fresh server. Every measured handshake is a user and a token the server has not seen (an RS256 check
 * each). The verdict takes the median round of each.
 *
 * Why its own phase: the connect phase of each fan-out run measured one round per server, of its first
 * 4,500 users after 500, and the verdict took the first draw-chat server of the run. That server was the slowest
 * of the three draw-chat servers of a run in three runs of four (2026-11-26, docs/BENCHMARKS.md), for reasons not
 * found, and 500 users are not enough for a server to have compiled its handshake path: with the server alone on
 * one core (`npm run loadtest -- --viewers N --full 0`, the server pinned with taskset), 2,000 new users cost
 * draw-chat 490 µs of CPU each and 10,000 cost 330–350. On draw night the rush of the last minutes meets a server
 * that has been open for an hour. The fan-out table keeps its connect-phase figures (a cold server).
 */
interface HandshakeRound extends HandshakeFigures {
  id: 'drawchat' | 'ws';
  label: string;
  round: number;
}

const handshakeTargets = {
  drawchat: {
    start: () => startDrawChat({ database: 'sqlite', keysDir: mint.dir, label: 'draw-chat, batch=1' }),
    batch: true,
  },
  ws: { start: () => startWsBaseline({ batchMs: 0, jwksFile: mint.jwksFile }), batch: false },
};

async function handshakeRound(id: HandshakeRound['id'], no: number): Promise<HandshakeRound> {
  const spec = handshakeTargets[id];
  return onTarget(spec.start, async (target) => {
    if (target.kind === 'drawchat') target.sessionId = await activeSessionId(target.urls[0]!, tokens[0]!);
    const label = `${target.label}, handshakes round ${no}`;
    progress.log(`— handshakes: ${label}, ${P.handshakeWarm} users, then ${P.handshakeMeasured} measured`);
    const { result } = await withLoad(
      target,
      { generator: gen, label, progress, tickMs: smoke ? 500 : 1000 },
      async (ctx) => {
        const shared = {
          fullShare: P.full,
          sampleShare: P.sample,
          batch: spec.batch,
          concurrency: P.concurrency,
          senders: 0,
        };
        ctx.mon.phase = 'warm-up';
        await ctx.gen.connect(target, {
          ...shared,
          viewers: P.handshakeWarm,
          tokens: tokens.slice(0, P.handshakeWarm),
        });
        await sleep(P.settleMs);
        const { figures } = await measuredConnect(ctx, {
          ...shared,
          viewers: P.handshakeMeasured,
          tokens: tokens.slice(P.handshakeWarm, P.handshakeWarm + P.handshakeMeasured),
          offset: P.handshakeWarm,
        });
        const r: HandshakeRound = { id, label: target.label, round: no, ...figures };
        progress.log(
          `  ${r.ok} at ${fmt(r.perSecond)}/s (p99 ${r.connectP99Ms} ms); CPU per handshake: server ${r.serverCpuUs} µs, generator ${r.generatorCpuUs} µs`,
        );
        return r;
      },
    );
    return result;
  });
}

if (wanted('handshakes')) {
  // Every other scenario may have been left out (`--only handshakes`): the generator is warmed up all the same.
  if (!(wanted('fanout') || wanted('hearts') || wanted('storm'))) await warmGenerator();
  for (let no = 1; no <= P.handshakeRounds; no++) {
    const order: Array<HandshakeRound['id']> = no % 2 === 1 ? ['drawchat', 'ws'] : ['ws', 'drawchat'];
    for (const id of order) handshakeRounds.push(await handshakeRound(id, no));
  }
  const of = (id: HandshakeRound['id']) => handshakeRounds.filter((r) => r.id === id);
  const dc = of('drawchat');
  const ws = of('ws');
  const dcRate = median(dc.map((r) => r.perSecond));
  const wsRate = median(ws.map((r) => r.perSecond));
  const r = wsRate > 0 ? round(dcRate / wsRate, 2) : null;
  const cold = fanout.drawchat?.handshakes.perSecond;
  const coldWs = fanout.ws?.handshakes.perSecond;
  verdict({
    id: 'handshakes-vs-ws-rs256',
    target: `Handshakes/s, RS256 check per new token, vs raw ws + RS256 (median of ${P.handshakeRounds} alternating rounds, ${P.handshakeMeasured} new users after ${P.handshakeWarm})`,
    goal: '≥ 1.0×',
    measured:
      `${fmt(dcRate)}/s vs ${fmt(wsRate)}/s (rounds ${dc.map((x) => fmt(x.perSecond)).join(', ')} vs ${ws.map((x) => fmt(x.perSecond)).join(', ')}); ` +
      `server CPU ${median(dc.map((x) => x.serverCpuUs))} vs ${median(ws.map((x) => x.serverCpuUs))} µs per handshake` +
      (cold && coldWs ? `; cold, in the fan-out connect phase: ${fmt(cold)}/s vs ${fmt(coldWs)}/s` : ''),
    value: r ?? 0,
    ratio: r,
    ok: r === null ? null : r >= 1,
  });
  scenarios.handshakes = {
    warmUsers: P.handshakeWarm,
    measuredUsers: P.handshakeMeasured,
    rounds: handshakeRounds,
    median: { drawchat: dcRate, ws: wsRate },
  };
  save(false);
}

// ------------------------------------------------------------------ 2. durable ingest

if (wanted('ingest')) {
  const ingest: Record<string, unknown> = {};
  for (const db of ['sqlite', 'postgres'] as const) {
    if (db === 'postgres' && !pgOk) {
      ingest[db] = { skipped: 'PostgreSQL not reachable (TEST_DATABASE_URL)' };
      verdict({
        id: `ingest-${db}`,
        target: 'Durable ingest on PostgreSQL',
        goal: '≥ 2000 msg/s, ack p99 < 50 ms',
        measured: 'skipped',
        value: 0,
        ratio: null,
        ok: null,
        note: 'PostgreSQL not reachable',
      });
      continue;
    }
    const fresh = db === 'postgres' ? await freshPostgres() : undefined;
    try {
      await onTarget(
        () =>
          startDrawChat({
            database: fresh?.url ?? 'sqlite',
            keysDir: mint.dir,
            label: `draw-chat ingest ${db}`,
          }),
        async (target) => {
          target.sessionId = await activeSessionId(target.urls[0]!, tokens[0]!);
          progress.log(`— durable ingest on ${db}: ${P.ingestSenders} senders`);
          const { result, series } = await withLoad(
            target,
            { generator: gen, label: target.label, progress, tickMs: smoke ? 500 : 1000 },
            async (ctx) => {
              await ctx.gen.connect(target, {
                viewers: P.ingestSenders,
                senders: P.ingestSenders,
                fullShare: 0,
                sampleShare: 0,
                batch: true,
                concurrency: P.concurrency,
                tokens,
              });
              // Unmeasured seconds at the first rate first, as the other scenarios warm their servers up: a
              // fresh server's first seconds of commits stalled for up to 0.8 s on machine 5 (its first step,
              // 500 msg/s, failed twice on ack p99, 841 and 128 ms, and the steps after passed at 7–18 ms), and a
              // search whose first step fails only goes down.
              ctx.mon.phase = 'warm-up';
              await ctx.hold(P.ingestStart, P.ingestWarmS);
              await ctx.drain(3000);
              const search = await searchRate(ctx, {
                start: P.ingestStart,
                stepS: P.stepS,
                bisections: P.bisections,
                min: smoke ? P.ingestStart : 50,
                max: P.ingestMax,
                check: (w, rate) => {
                  if (w.ack.count === 0) return 'no acks';
                  if (w.sentPerSecond < 0.9 * rate - 2)
                    return `the generator sent only ${round(w.sentPerSecond)}/s`;
                  if (w.ack.p99 >= 50) return `ack p99 ${w.ack.p99} ms`;
                  if (w.ackedPerSecond < 0.95 * w.sentPerSecond) return `acked ${round(w.ackedPerSecond)}/s`;
                  return null;
                },
              });
              const commit = await metricHistogram(target.urls, 'drawchat_commit_seconds');
              const items = await metricHistogram(target.urls, 'drawchat_commit_batch_items');
              return {
                committedPerSecond: round(search.best?.window.ackedPerSecond ?? 0, 0),
                rate: search.best?.rate ?? 0,
                ackMs: search.best?.window.ack,
                best: search.best ? windowFigures(search.best.window) : undefined,
                commitMeanMs: round(commit.mean * 1000, 2),
                itemsPerCommit: round(items.mean, 1),
                steps: search.steps.map((s) => ({
                  rate: s.rate,
                  pass: s.pass,
                  why: s.why,
                  acked: round(s.window.ackedPerSecond, 0),
                  ackP99: s.window.ack.p99,
                  cpu: round(s.window.cpuPercent, 0),
                })),
              };
            },
          );
          ingest[db] = result;
          reportRuns.push({ title: `Durable ingest: ${db}`, series });
          const ok = result.committedPerSecond >= 2000 && (result.ackMs?.p99 ?? 1e9) < 50;
          progress.log(
            `  ${fmt(result.committedPerSecond)} msg/s committed and acked, ack p99 ${result.ackMs?.p99} ms`,
          );
          verdict({
            id: `ingest-${db}`,
            target: `Durable ingest on ${db === 'sqlite' ? 'SQLite (synchronous=FULL)' : 'PostgreSQL'}, group commit`,
            goal: '≥ 2000 msg/s, commit-to-ack p99 < 50 ms',
            measured: `${fmt(result.committedPerSecond)} msg/s, ack p99 ${result.ackMs?.p99 ?? 'n/a'} ms`,
            value: result.committedPerSecond,
            ratio: round(result.committedPerSecond / 2000, 2),
            ok,
            note: smoke ? 'smoke: capped far below the goal' : undefined,
          });
        },
      );
    } finally {
      await fresh?.drop();
    }
  }
  scenarios.ingest = ingest;
  save(false);
}

// ------------------------------------------------------------------ 3. one node vs two nodes + Redis

if (wanted('scale')) {
  const scale: Record<string, unknown> = {};
  if (!redisOk || !pgOk) {
    scale.skipped = `${redisOk ? '' : 'Redis'}${!redisOk && !pgOk ? ' and ' : ''}${pgOk ? '' : 'PostgreSQL'} not reachable`;
    verdict({
      id: 'scale-two-nodes',
      target: 'Two nodes + Redis vs one node: viewers at p99 ≤ 250 ms',
      goal: '≥ 1.6×',
      measured: 'skipped',
      value: 0,
      ratio: null,
      ok: null,
      note: String(scale.skipped),
    });
  } else {
    const capacity: Record<string, { viewers: number; steps: unknown[] }> = {};
    for (const nodes of [1, 2]) {
      const fresh = await freshPostgres();
      try {
        await onTarget(
          () =>
            startDrawChat({
              database: fresh.url,
              probe: true,
              nodes,
              redisUrl: nodes > 1 ? values.redis : undefined,
              keysDir: mint.dir,
              label: `draw-chat ×${nodes}${nodes > 1 ? ' + Redis' : ''}`,
            }),
          async (target) => {
            target.sessionId = await activeSessionId(target.urls[0]!, tokens[0]!);
            progress.log(`— capacity of ${target.label} at ${P.scaleRate} msg/s (PostgreSQL)`);
            const { result, series } = await withLoad(
              target,
              { generator: gen, label: target.label, progress, tickMs: smoke ? 500 : 1000 },
              async (ctx) => {
                const steps: Array<Record<string, unknown>> = [];
                let viewers = 0;
                let best = 0;
                ctx.gen.setRates(P.scaleRate);
                ctx.mon.offered = P.scaleRate;
                while (viewers + P.scaleStep <= P.scaleMax * nodes) {
                  ctx.mon.phase = `${viewers + P.scaleStep} viewers`;
                  const c = await ctx.gen.connect(target, {
                    viewers: P.scaleStep,
                    senders: viewers === 0 ? Math.min(20, P.scaleStep) : 0,
                    fullShare: 0.01,
                    sampleShare: P.sample,
                    batch: true,
                    concurrency: P.concurrency,
                    tokens: tokens.slice(viewers, viewers + P.scaleStep),
                    offset: viewers,
                  });
                  viewers += P.scaleStep;
                  const unconnected = c.ok < P.scaleStep ? `${P.scaleStep - c.ok} failed to connect` : null;
                  // A step that failed on its window is held once more, as the rate searches run a failed step
                  // twice: at 17:19 two nodes stopped at 5,000 on a p99 of 250.111 ms, and one node at 6,000 on
                  // one window with its CPU at 73 %. The same viewers stay connected; the second window decides.
                  let why: string | null;
                  let held = 0;
                  do {
                    const w = await ctx.hold(P.scaleRate, P.scaleHoldS, { warmS: P.scaleWarmS });
                    why = unconnected ?? fanoutCheck(w, P.scaleRate, viewers);
                    steps.push({ viewers, pass: why === null, why: why ?? 'ok', ...windowFigures(w) });
                    held++;
                  } while (why !== null && unconnected === null && held < 2);
                  if (why !== null) break;
                  best = viewers;
                }
                return { viewers: best, steps };
              },
            );
            capacity[`nodes${nodes}`] = result;
            reportRuns.push({ title: `Capacity: ${target.label}`, series });
            progress.log(`  ${target.label}: ${result.viewers} viewers at p99 ≤ ${P99_LIMIT_MS} ms`);
          },
        );
      } finally {
        await fresh.drop();
      }
    }
    const one = capacity.nodes1?.viewers ?? 0;
    const two = capacity.nodes2?.viewers ?? 0;
    const r = one > 0 ? round(two / one, 2) : 0;
    Object.assign(scale, { rate: P.scaleRate, step: P.scaleStep, database: 'postgres', ...capacity });
    verdict({
      id: 'scale-two-nodes',
      target: `Two nodes + Redis vs one node (same machine): viewers at ${P.scaleRate} msg/s with p99 ≤ 250 ms`,
      goal: '≥ 1.6×',
      measured: `${two} vs ${one} viewers`,
      value: r,
      ratio: r,
      ok: r >= 1.6,
    });
  }
  scenarios.scale = scale;
  save(false);
}

// ------------------------------------------------------------------ 4. history on a big session

if (wanted('history')) {
  const history: Record<string, unknown> = {};
  for (const db of ['sqlite', 'postgres'] as const) {
    if (db === 'postgres' && !pgOk) {
      history[db] = { skipped: 'PostgreSQL not reachable' };
      verdict({
        id: `history-${db}`,
        target: 'History page on PostgreSQL',
        goal: 'p99 < 10 ms',
        measured: 'skipped',
        value: 0,
        ratio: null,
        ok: null,
      });
      continue;
    }
    const fresh = db === 'postgres' ? await freshPostgres() : undefined;
    const dir = db === 'sqlite' ? mkdtempSync(join(tmpdir(), 'drawchat-bench-history-')) : undefined;
    const url = fresh?.url ?? `sqlite:${join(dir!, 'chat.db')}`;
    try {
      const drawTime = benchWindow().drawTime;
      progress.log(`— history: seeding ${fmt(P.historyMessages)} messages into ${db}…`);
      const seedStart = performance.now();
      const sessionId = await seedHistory(url, drawTime, P.historyMessages);
      const seedS = (performance.now() - seedStart) / 1000;
      await onTarget(
        () => startDrawChat({ database: url, drawTime, keysDir: mint.dir, label: `draw-chat history ${db}` }),
        async (target) => {
          // Latency as one client sees it (one request at a time), then throughput with 8 at once.
          const r = await historyLoad({
            url: target.urls[0]!,
            token: tokens[0]!,
            sessionId,
            seconds: P.historyS,
            concurrency: 1,
          });
          const busy = await historyLoad({
            url: target.urls[0]!,
            token: tokens[0]!,
            sessionId,
            seconds: P.historyS,
            concurrency: 8,
          });
          history[db] = {
            messages: P.historyMessages,
            seedSeconds: round(seedS),
            sequential: r,
            concurrent8: busy,
          };
          progress.log(
            `  one at a time: p50 ${r.all.p50} ms, p99 ${r.all.p99} ms (newest page p99 ${r.newest.p99}, older p99 ${r.older.p99}); ` +
              `8 at once: ${fmt(busy.perSecond)} pages/s, p99 ${busy.all.p99} ms${r.errors + busy.errors ? `, ${r.errors + busy.errors} errors` : ''}`,
          );
          verdict({
            id: `history-${db}`,
            target: `GET /live-chat/messages on a session with ${fmt(P.historyMessages)} messages (${db})`,
            goal: 'p99 < 10 ms',
            measured: `p99 ${r.all.p99} ms (p50 ${r.all.p50} ms); ${fmt(busy.perSecond)} pages/s at 8 concurrent, p99 ${busy.all.p99} ms`,
            value: r.all.p99,
            ratio: null,
            ok: r.errors === 0 && r.all.p99 < 10,
          });
        },
      );
    } finally {
      await fresh?.drop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  }
  scenarios.history = history;
}

// ------------------------------------------------------------------ results

function buildResults(complete: boolean) {
  return {
    suite: 'draw-chat bench',
    mode: smoke ? 'smoke' : 'full',
    complete,
    startedAt: startedAt.toISOString(),
    durationS: round((Date.now() - startedAt.getTime()) / 1000, 0),
    machine: { ...machineAtStart, loadAverageAtEnd: loadavg().map((l) => round(l, 2)) },
    git,
    generator: { processes: workers, sameMachine: true },
    parameters: P,
    verdicts,
    scenarios,
  };
}

function markdown(results: ReturnType<typeof buildResults>): string {
  const durationS = results.durationS;
  const m = results.machine;
  const lines = [
    `### Results of ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC (${results.mode} suite${only ? `, only ${[...only].join(', ')}` : ''}, ${durationS} s)`,
    '',
    `Machine: ${m.cpus} × ${m.cpuModel}, ${m.memoryGB} GB, ${m.os}, Node.js ${m.node}; the load generator (${workers} client processes) on the same machine; load average ${m.loadAverage.join(' / ')} at the start, ${m.loadAverageAtEnd.join(' / ')} at the end.${git ? ` Commit ${git.commit}${git.dirty ? ' with local changes' : ''}.` : ''}`,
    '',
    '| target | goal | measured | ratio | verdict |',
    '|---|---|---|---:|---|',
    ...verdicts.map(
      (v) =>
        `| ${v.target} | ${v.goal} | ${v.measured} | ${v.ratio === null ? '' : `${v.ratio}×`} | ${v.verdict === 'pass' ? '**pass**' : v.verdict === 'miss' ? '**miss**' : 'skipped'}${v.note ? ` (${v.note})` : ''} |`,
    ),
    '',
  ];
  if (Object.keys(fanout).length > 0) {
    lines.push(
      `#### Fan-out, ${P.viewers} viewers in one room (${P.senders} of them sending)`,
      '',
      '| server | handshakes/s | µs CPU/handshake (server, generator) | connect p99 | idle KB/conn | sustained msg/s | deliveries/s | p50 / p99 ms | server CPU | µs CPU/delivery | generator CPU |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    );
    for (const r of Object.values(fanout)) {
      const s = r.sustained;
      lines.push(
        `| ${r.label} | ${fmt(r.handshakes.perSecond)} | ${r.handshakes.serverCpuUs}, ${r.handshakes.generatorCpuUs} | ${r.handshakes.connectP99Ms} ms | ${r.idleKBPerConnection} | ${s.rate}${s.passed ? '' : ' (p99 or delivery goal missed at every rate)'} | ${fmt(s.deliveriesPerSecond)} | ${s.latencyMs.p50} / ${s.latencyMs.p99} | ${s.serverCpuPercent}% | ${s.serverCpuUsPerDelivery} | ${s.generatorCpuPercent}% |`,
      );
    }
    lines.push('', 'Rate search (msg/s → verdict):', '');
    for (const r of Object.values(fanout)) {
      lines.push(
        `- ${r.label}: ${r.steps.map((s) => `${s.rate} ${s.pass ? '✓' : `✗ (${s.why})`}`).join(', ') || 'not searched'}`,
      );
    }
    lines.push('');
  }
  if (handshakeRounds.length > 0) {
    lines.push(
      `#### Handshakes: ${P.handshakeMeasured} new users after ${P.handshakeWarm}, alternating rounds`,
      '',
      '| round | server | handshakes/s | µs CPU/handshake (server, generator) | connect p50 / p99 |',
      '|---:|---|---:|---:|---:|',
      ...handshakeRounds.map(
        (r) =>
          `| ${r.round} | ${r.label} | ${fmt(r.perSecond)} | ${r.serverCpuUs}, ${r.generatorCpuUs} | ${r.connectP50Ms} / ${r.connectP99Ms} ms |`,
      ),
      '',
    );
  }
  return lines.join('\n');
}

/** Writes what is measured so far (after each scenario, so an interrupted run leaves its figures). */
function save(complete: boolean): string {
  const results = buildResults(complete);
  mkdirSync(outDir, { recursive: true });
  writeFileSync(`${base}.json`, `${JSON.stringify(results, null, 2)}\n`);
  const md = markdown(results);
  writeFileSync(`${base}.md`, md);
  const htmlRuns: ReportRun[] = reportRuns.map((r) => ({ ...r, series: r.series as TimePoint[] }));
  writeHtmlReport(`${base}.html`, `draw-chat bench ${startedAt.toISOString()}`, htmlRuns);
  return md;
}

await gen.close();
const md = save(true);
progress.log('');
progress.log(md);
progress.log(`wrote ${base}.json, ${base}.md and ${base}.html`);
process.exit(0);
