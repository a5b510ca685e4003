/**
 * `npm run loadtest -- --viewers 5000 --senders 200 --rate 300 --hearts 20000 --duration 30 [--url …] [--nodes …]`
 *
 * Mints tokens, starts draw-chat (or uses `--url`), ramps the connections, sends messages and hearts at the given
 * rates for `--duration` seconds, and measures delivery latency (HDR: p50, p95, p99, max), deliveries per second,
 * connection time, errors by code, and the server's CPU and RSS. Writes a JSON result and an HTML report.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Generator } from './lib/generator.js';
import { machineInfo, writeHtmlReport } from './lib/report.js';
import { activeSessionId, fmt, Progress, sessionTotals, sleep, withLoad } from './lib/session.js';
import {
  cpuMeter,
  externalDrawChat,
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
import { DEFAULT_KEYS_DIR, TokenMint } from './lib/tokens.js';

const HELP = `usage: npm run loadtest -- [options]
  --viewers N        simulated viewers (default 1000); senders are among them
  --senders N        viewers that send messages (default 50)
  --warm N           first connect N more viewers (their own users), unmeasured: the handshake figures are then
                     those of a server that has already taken N (compiled, caches and pools grown), as on draw
                     night after the first wave; they stay connected (default 0)
  --rate N           messages per second, all senders together (default 100)
  --hearts N         session hearts per second, all viewers together (default 0; draw-chat only)
  --duration S       seconds of load after the ramp (default 30)
  --url URL[,URL]    a running draw-chat (dev auth, or --key); default: start one here
  --nodes N          start N local nodes with Redis (REDIS_URL or redis://127.0.0.1:6379)
  --database D       sqlite (default, a temp file) or a postgres:// URL, for a local server
  --target T         drawchat (default), ws, ws-batch, socketio: the local baselines take the same load
  --seed-style       one JSON object per frame instead of batch=1 array frames
  --full F           share of full clients (default 0.02)
  --sample F         share of light clients that record latency (default 0.1)
  --workers N        client processes (default ${Generator.defaultWorkers()})
  --concurrency N    handshakes in flight per client process (default 200)
  --key FILE         sign tokens with this private RSA JWK (server: AUTH_JWKS_URL); --issuer, --audience
  --keys-dir DIR     dev-auth key directory shared with the server (default ${DEFAULT_KEYS_DIR} for local
                     servers; with --url and no --key, tokens come from the server's POST /live-chat/dev/token)
  --redis URL        Redis for --nodes > 1 (default $REDIS_URL or redis://127.0.0.1:6379)
  --cpu-prof DIR     write a V8 CPU profile of each local node into DIR (the whole process)
  --profile-load P   CPU-profile only the load phase of each local node: P.node<i>.cpuprofile
  --profile-ramp P   CPU-profile only the connect phase (the handshakes) of each local node, the same way
  --before           a local draw-chat with the fan-out code from before the performance work (A/B)
  --out PATH         result files PATH.json and PATH.html (default bench/results/loadtest-<time>)`;

/** A flag the load test cannot run with: reported in one line, exit code 2. */
class UsageError extends Error {}

/** The key id of a running dev-auth server's own JWKS; a server with real auth needs `--key`. */
async function devAuthKid(url: string): Promise<string> {
  const jwks = (await fetch(`${url}/.well-known/jwks.json`)
    .then((r) => (r.ok ? r.json() : null))
    .catch(() => null)) as { keys?: Array<{ kid?: string }> } | null;
  const kid = jwks?.keys?.[0]?.kid;
  if (!kid)
    throw new UsageError(
      `${url} is not a draw-chat in dev auth mode (no /.well-known/jwks.json): ` +
        'pass --key with a private JWK it trusts through AUTH_JWKS_URL',
    );
  return kid;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      viewers: { type: 'string', default: '1000' },
      warm: { type: 'string', default: '0' },
      senders: { type: 'string', default: '50' },
      rate: { type: 'string', default: '100' },
      hearts: { type: 'string', default: '0' },
      duration: { type: 'string', default: '30' },
      url: { type: 'string' },
      nodes: { type: 'string', default: '1' },
      database: { type: 'string', default: 'sqlite' },
      redis: { type: 'string', default: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
      target: { type: 'string', default: 'drawchat' },
      'seed-style': { type: 'boolean', default: false },
      full: { type: 'string', default: '0.02' },
      sample: { type: 'string', default: '0.1' },
      workers: { type: 'string', default: String(Generator.defaultWorkers()) },
      concurrency: { type: 'string', default: '200' },
      key: { type: 'string' },
      issuer: { type: 'string' },
      audience: { type: 'string' },
      'keys-dir': { type: 'string' },
      'cpu-prof': { type: 'string' },
      'profile-load': { type: 'string' },
      'profile-ramp': { type: 'string' },
      before: { type: 'boolean', default: false },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return;
  }
  const num = (name: keyof typeof values) => {
    const n = Number(values[name]);
    if (values[name] === '' || !Number.isFinite(n) || n < 0)
      throw new UsageError(`--${name} must be a number ≥ 0`);
    return n;
  };
  /** A whole number of things, at least `min`. */
  const count = (name: keyof typeof values, min: number) => {
    const n = num(name);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be a whole number ≥ ${min}`);
    return n;
  };
  const share = (name: keyof typeof values) => {
    const n = num(name);
    if (n > 1) throw new UsageError(`--${name} is a share from 0 to 1 (0.02 is 2 %)`);
    return n;
  };
  const viewers = count('viewers', 1);
  const senders = Math.min(count('senders', 0), viewers);
  const warm = count('warm', 0);
  const rate = num('rate');
  const hearts = num('hearts');
  // The baselines have no hearts: draw-chat's like frame would be a protocol error there (Engine.IO closes on it).
  if (hearts > 0 && values.target !== 'drawchat') throw new UsageError('--hearts needs --target drawchat');
  const duration = num('duration');
  const nodes = count('nodes', 1);
  const workers = count('workers', 1);
  const concurrency = count('concurrency', 1);
  const fullShare = share('full');
  const sampleShare = share('sample');
  const urls = values.url?.split(',').map((u) => u.trim().replace(/\/+$/, ''));
  if (urls?.some((u) => !/^https?:\/\/[^/]+$/.test(u)))
    throw new UsageError('--url takes http(s)://host[:port] addresses, comma-separated');
  if (urls) {
    const local = [
      ...(['cpu-prof', 'profile-load', 'profile-ramp'] as const).filter((f) => values[f] !== undefined),
      ...(values.before ? ['before'] : []),
      ...(nodes !== 1 ? ['nodes'] : []),
      ...(values.database !== 'sqlite' ? ['database'] : []),
      ...(values.target !== 'drawchat' ? ['target'] : []),
    ];
    if (local.length > 0)
      throw new UsageError(
        `--url measures a running server; ${local.map((f) => `--${f}`).join(', ')} apply to local ones`,
      );
  } else if (values.key) {
    throw new UsageError(
      '--key signs tokens for a server that trusts that key (AUTH_JWKS_URL): pass its --url',
    );
  }
  const progress = new Progress();
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const out = values.out ?? join(ROOT, 'bench', 'results', `loadtest-${stamp}`);

  // A running dev-auth server (`--url` without `--key` or `--keys-dir`) mints its own users' tokens; a local server
  // shares the generator's key directory; `--key` signs for a server that trusts it.
  const mint = values.key
    ? await TokenMint.fromKeyFile(
        values.key,
        { issuer: values.issuer, audience: values.audience },
        values['keys-dir'] ?? DEFAULT_KEYS_DIR,
      )
    : urls && values['keys-dir'] === undefined
      ? TokenMint.fromServer(urls[0]!, await devAuthKid(urls[0]!))
      : await TokenMint.open(values['keys-dir'] ?? DEFAULT_KEYS_DIR);
  progress.log(`minting ${warm + viewers} tokens (cached in ${mint.dir})…`);
  // Warm-up viewers first, then the measured ones: every measured handshake is a user the server has not seen.
  const allTokens = await mint.tokens(0, warm + viewers);
  const tokens = allTokens.slice(warm);

  let target: Target;
  switch (values.target) {
    case 'drawchat':
      target = urls
        ? externalDrawChat(urls)
        : await startDrawChat({
            database: values.database,
            nodes,
            redisUrl: nodes > 1 ? values.redis : undefined,
            keysDir: mint.dir,
            cpuProfDir: values['cpu-prof'],
            probe: true,
            before: values.before,
            label: values.before ? 'draw-chat (before)' : undefined,
          });
      target.sessionId = await activeSessionId(target.urls[0]!, tokens[0]!);
      break;
    case 'ws':
    case 'ws-batch':
      target = await startWsBaseline({ batchMs: values.target === 'ws' ? 0 : 100, jwksFile: mint.jwksFile });
      break;
    case 'socketio':
      target = await startSocketIoBaseline();
      break;
    default:
      throw new Error(`--target must be drawchat, ws, ws-batch or socketio`);
  }
  progress.log(`target: ${target.label} at ${target.urls.join(', ')}`);

  try {
    const idle = procSample(target.pids);
    const { result, series } = await withLoad(
      target,
      { workers, label: target.label, progress },
      async (ctx) => {
        const clients = {
          fullShare,
          sampleShare,
          batch: !values['seed-style'],
          concurrency,
        };
        if (warm > 0) {
          ctx.mon.phase = 'warm-up';
          const warmed = await ctx.gen.connect(target, {
            ...clients,
            viewers: warm,
            senders: 0,
            tokens: allTokens.slice(0, warm),
          });
          progress.log(`warm-up: ${warmed.ok}/${warm} connected (not measured)`);
          await sleep(2000);
        }
        ctx.mon.phase = 'ramp';
        if (values['profile-ramp']) await target.profile?.('start');
        const serverCpu = cpuMeter(target.pids);
        const generatorCpu = cpuMeter(ctx.gen.pids);
        const rampFrom = ctx.mon.now();
        const connect = await ctx.gen.connect(target, { ...clients, viewers, senders, tokens, offset: warm });
        // Each handshake's time (upgrade sent → `init`), over the ticks of the connect phase.
        await ctx.mon.nextTick();
        const connectMs = ctx.mon.window(rampFrom, ctx.mon.now()).connect;
        // CPU time (user + system) per handshake over the connect phase: the server's (local targets) and the
        // generator's own, which shares the machine.
        const cpu = {
          server: target.pids.length ? serverCpu(connect.ok) : undefined,
          generator: generatorCpu(connect.ok),
        };
        progress.log(
          `connected ${connect.ok}/${viewers} in ${(connect.elapsedMs / 1000).toFixed(1)} s ` +
            `(${fmt(connect.perSecond)} handshakes/s; connect p50 ${connectMs.p50} p95 ${connectMs.p95} p99 ${connectMs.p99} max ${connectMs.max} ms; ` +
            `CPU per handshake: server ${cpu.server ?? 'n/a'} µs, generator ${cpu.generator} µs)` +
            `${connect.failed ? `, ${connect.failed} failed attempts ${JSON.stringify(connect.failures)}` : ''}`,
        );
        if (values['profile-ramp']) {
          const files = (await target.profile?.('stop', values['profile-ramp'])) ?? [];
          progress.log(`profiled the connect phase: ${files.join(', ')}`);
        }
        await sleep(1000);
        if (values['profile-load']) await target.profile?.('start');
        // Sending stops when the seconds are up (`stop`), not at the monitor's next tick, which waits for the
        // server: a server far behind would otherwise get more load than asked for.
        const t0 = ctx.mon.now();
        const loaded = await ctx.hold(rate, duration, { hearts, phase: 'load', warmS: 1, stop: true });
        if (values['profile-load']) {
          const files = (await target.profile?.('stop', values['profile-load'])) ?? [];
          progress.log(`profiled the load phase: ${files.join(', ')}`);
        }
        ctx.mon.phase = 'drain';
        await ctx.drain(5000);
        await sleep(500);
        const final = await ctx.gen.final();
        let server: Record<string, number> = {};
        if (target.kind === 'drawchat') {
          // The totals once every node has read what its sockets held (read lag 0, at most 60 s more; the heart
          // timer commits within 50 ms of a read): a node that fell behind would otherwise be counted short, and
          // hearts still unread taken for hearts lost. `caughtUpS`: how long that took (NaN: not within 60 s).
          const waitFrom = performance.now();
          let caughtUpS = Number.NaN;
          while (performance.now() - waitFrom < 60_000) {
            if ((await metricValue(target.urls, 'drawchat_read_lag_seconds')) === 0) {
              await sleep(200);
              caughtUpS = (performance.now() - waitFrom) / 1000;
              break;
            }
            await sleep(250);
          }
          const totals = await sessionTotals(target.urls[0]!, tokens[0]!);
          server = {
            caughtUpS,
            totalLikes: totals.totalLikes,
            viewerCount: totals.viewers,
            messagesCommitted: await metricValue(target.urls, 'drawchat_messages_total'),
            slowConsumersCut: await metricValue(target.urls, 'drawchat_slow_consumers_total'),
          };
          const commit = await metricHistogram(target.urls, 'drawchat_commit_seconds');
          const batch = await metricHistogram(target.urls, 'drawchat_commit_batch_items');
          const delivery = await metricHistogram(target.urls, 'drawchat_message_delivery_seconds');
          Object.assign(server, {
            commits: commit.count,
            commitMeanMs: commit.mean * 1000,
            commitP99MsBucket: commit.p99 * 1000,
            commitItemsMean: batch.mean,
            commitToWriteMeanMs: delivery.mean * 1000,
            commitToWriteP99MsBucket: delivery.p99 * 1000,
          });
        }
        // The latency of every delivery of the load's messages, also those that came after the sending stopped
        // (a server behind delivers them late, and leaving them out would flatter it): over the load, the drain
        // and the wait for the server to catch up, with the tick that covers them.
        await ctx.mon.nextTick();
        const whole = ctx.mon.window(t0 + 1, ctx.mon.now());
        return {
          connect: { ...connect, latencyMs: connectMs, cpuUsPerHandshake: cpu },
          loaded: { ...loaded, latency: whole.latency, ack: whole.ack },
          final,
          server,
        };
      },
    );
    const overallRate = result.loaded.deliveriesPerSecond;
    progress.log(
      `load: ${fmt(result.loaded.sentPerSecond)} msg/s sent, ${fmt(overallRate)} deliveries/s, ` +
        `latency p50 ${result.loaded.latency.p50} p95 ${result.loaded.latency.p95} p99 ${result.loaded.latency.p99} max ${result.loaded.latency.max} ms, ` +
        `server cpu ${result.loaded.cpuPercent.toFixed(0)}% rss ${result.loaded.rssMB.toFixed(0)} MB`,
    );
    if (hearts > 0)
      progress.log(
        `hearts: sent ${result.final.heartsSent}, refused ${result.final.heartsRefused}, session total ${result.server.totalLikes ?? 'n/a'}; ` +
          `like-count updates per viewer: max ${result.final.likeUpdatesMaxAvgPerSecond.toFixed(2)}/s on average, ${result.final.likeUpdatesMaxPerSecond} in one second`,
      );
    if (target.kind === 'drawchat') progress.log(`server: ${JSON.stringify(result.server)}`);
    progress.log(
      `full clients: ${result.final.fullClients}, invalid events ${result.final.invalidEvents}, order violations ${result.final.orderViolations}, ` +
        `errors ${JSON.stringify(result.loaded.errors)}, closes ${JSON.stringify(result.loaded.closes)}`,
    );
    const report = {
      kind: 'loadtest',
      startedAt: new Date().toISOString(),
      machine: machineInfo(),
      options: { ...values, viewers, senders, rate, hearts, duration },
      target: { kind: target.kind, label: target.label, urls: target.urls },
      // A running server's (`--url`) is not this machine's to read; its RSS under load comes from /metrics.
      idleRssMB: target.pids.length ? idle.rssBytes / 1024 / 1024 : undefined,
      ...result,
      series,
    };
    mkdirSync(join(out, '..'), { recursive: true });
    writeFileSync(`${out}.json`, `${JSON.stringify(report, null, 2)}\n`);
    writeHtmlReport(`${out}.html`, `draw-chat load test: ${target.label}`, [
      { title: `${target.label}: ${viewers} viewers, ${rate} msg/s, ${hearts} hearts/s`, series },
    ]);
    progress.log(`wrote ${out}.json and ${out}.html`);
  } finally {
    await target.stop();
  }
}

// Stopped by a signal (`kill <pid>`, not only Ctrl-C, which reaches the whole process group): the local servers go
// too, even one still starting. The client processes exit when their IPC channel closes with this process.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void stopSpawned().finally(() => process.exit(130));
  });
}

main().then(
  () => process.exit(0),
  (err) => {
    // A wrong flag is one line and exit code 2; anything else keeps its stack, for whoever has to fix it.
    const usage =
      err instanceof UsageError || (err as NodeJS.ErrnoException)?.code?.startsWith('ERR_PARSE_ARGS');
    const text = err instanceof Error ? (usage ? err.message : (err.stack ?? err.message)) : String(err);
    process.stderr.write(`loadtest: ${text}${usage ? ' (--help lists the options)' : ''}\n`);
    void stopSpawned().finally(() => process.exit(usage ? 2 : 1));
  },
);
