/**
 * Tools of the hardening suite (issue 6): in-process nodes with the test-only server options, real node
 * processes with a memory/fd probe, a raw WebSocket peer that can send what no well-behaved library sends, a
 * private PostgreSQL that may be stopped and started, a TCP proxy that can cut one node off from Redis, and a
 * register of every secret minted so that each file can prove none of them reached a log line.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, createHmac, generateKeyPairSync, type KeyObject, randomBytes, sign } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, createServer as createTcpServer, type Socket, type Server as TcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { ManualClock } from '../../src/domain/clock.js';
import { loadOrCreateDevKeys, mintDevToken } from '../../src/http/auth/dev-auth.js';
import type { DrawChatServer, ServerOptions } from '../../src/server.js';
import { ROOT } from '../support/process.js';
import { freePort } from '../support/redis.js';
import { startServer } from '../support/server.js';
import { steadyWindowEnv } from '../support/window.js';
import { type ClientOptions, TestClient } from '../support/ws-client.js';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolves with `p`, or fails naming `what` after `ms`. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Polls `check` until it returns a truthy value (which is returned), failing after `ms`. `what` names what was
 * awaited; as a function it is asked at the failure, so the message can say how far things got.
 */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  ms: number,
  what: string | (() => string),
): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const label = typeof what === 'function' ? what() : what;
      throw new Error(`${label}: not within ${ms} ms${last ? ` (${last})` : ''}`);
    }
    await sleep(20);
  }
}

// ------------------------------------------------------------------------------------------- secrets and logs

/** Every token (and admin key) a test of this file minted or sent, and every log text produced. */
const secrets = new Set<string>();
const logSources: Array<{ name: string; text: () => string }> = [];

/** Registers a secret that must never appear in any log line; returns it. */
export function secret<T extends string>(value: T): T {
  secrets.add(value);
  return value;
}

export function addLogSource(name: string, text: () => string): void {
  logSources.push({ name, text });
}

/**
 * Fails when any registered secret, or the signature part of a registered JWT (enough to replay it when the
 * header and claims are guessable), appears in any log line produced so far. Returns the number of log lines read.
 */
export function expectNoSecretsLogged(): number {
  let lines = 0;
  const needles = new Set<string>();
  for (const s of secrets) {
    needles.add(s);
    const sig = s.split('.')[2];
    if (sig && sig.length >= 16) needles.add(sig);
  }
  for (const source of logSources) {
    const text = source.text();
    lines += text.split('\n').filter(Boolean).length;
    for (const needle of needles) {
      if (text.includes(needle)) {
        const line = text.split('\n').find((l) => l.includes(needle));
        expect.fail(`a secret reached the log of ${source.name}: ${line?.slice(0, 300)}`);
      }
    }
  }
  return lines;
}

// ------------------------------------------------------------------------------------------- in-process nodes

export interface NodeOptions {
  env?: Record<string, string>;
  clock?: ManualClock;
  /** Test-only server options: short heartbeat, short JWKS cooldown. */
  server?: Pick<ServerOptions, 'auth' | 'heartbeatMs'>;
  /** Share a data directory (dev signing key) between nodes; default: a fresh one, removed on close. */
  dataDir?: string;
}

export interface Node {
  readonly server: DrawChatServer;
  readonly url: string;
  readonly wsUrl: string;
  readonly logs: string[];
  readonly dataDir: string;
  /** A dev token (registered as a secret). */
  token(username: string, options?: { roles?: string[] }): Promise<string>;
  userId(token: string): string;
  request(
    method: string,
    path: string,
    options?: { token?: string; body?: unknown; headers?: Record<string, string>; rawBody?: string },
  ): Promise<{ status: number; body: any; headers: Headers }>;
  connect(
    sessionId: number | string,
    token?: string,
    options?: ClientOptions & { query?: string },
  ): Promise<TestClient>;
  sessionId(token: string): Promise<number>;
  close(): Promise<void>;
}

let nodeCount = 0;

/**
 * A real draw-chat server in this process (test/support/server.ts `startServer`), logging at debug into the
 * suite's log check, with its dev tokens registered as secrets that no log line may contain.
 */
export async function startNode(options: NodeOptions = {}): Promise<Node> {
  const ownDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'drawchat-hard-'));
  const t = await startServer({
    env: { DATA_DIR: dataDir, LOG_LEVEL: 'debug', ...options.env },
    clock: options.clock,
    dataDir,
    server: options.server,
  });
  addLogSource(`in-process node ${++nodeCount}`, () => t.logs.join(''));
  return {
    ...t,
    wsUrl: t.url.replace(/^http/, 'ws'),
    token: async (username, opts) => secret(await t.token(username, opts)),
    async close() {
      await t.close();
      if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Ids a client saw, from `init` and live, in arrival order. */
export function seenIds(c: TestClient): number[] {
  return [...(c.init?.messages ?? []), ...c.messages()].map((m: any) => m.id as number);
}

/**
 * The answer to a message sent with `client_msg_id` `cmid`: our own `new_message` or an `error` naming it, among
 * the events from index `from` on. Polls the event log (unlike `TestClient.next`, nothing is taken, so no
 * waiter outlives its call and steals the answer to a retry).
 */
export async function answerTo(c: TestClient, cmid: string, from = 0, timeoutMs = 10_000): Promise<any> {
  const me = c.init?.you.user_id;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (let i = from; i < c.events.length; i++) {
      const e = c.events[i]!;
      if (e.type === 'new_message' && e.message.client_msg_id === cmid && e.message.user_id === me) return e;
      if (e.type === 'error' && e.client_msg_id === cmid) return e;
    }
    if (Date.now() > deadline) throw new Error(`no answer to ${cmid} within ${timeoutMs} ms`);
    await sleep(5);
  }
}

/** Opens a TestClient and waits for init, closing it if init never comes. */
export async function connectTo(url: string, options: ClientOptions = {}): Promise<TestClient> {
  return TestClient.connect(url, options);
}

// ------------------------------------------------------------------------------------------- node processes

export interface Probe {
  /** Resident set size, bytes (after two full GCs). */
  rss: number;
  heapUsed: number;
  /** Memory of Buffers and other objects outside the V8 heap. */
  external: number;
  /** Open file descriptors of the process. */
  fds: number;
  handles: number;
}

export interface NodeProcess {
  readonly child: ChildProcess;
  readonly stdout: string[];
  readonly stderr: string[];
  readonly url: Promise<string>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Forces two GCs in the server and reports its memory, fds and handles. */
  probe(): Promise<Probe>;
  /** RSS read from /proc without touching the process (no GC). */
  rss(): number;
}

const PROBE = join(ROOT, 'test/hardening/fixtures/probe.mjs');

/**
 * Runs `src/main.ts` as its own process (like test/support/process.ts) with `--expose-gc` and the probe, which
 * answers SIGUSR2 with one JSON line on stderr: the server's own memory and fd figures.
 */
export function spawnNode(env: Record<string, string>): NodeProcess {
  const child = spawn(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', '--import', PROBE, 'src/main.ts'],
    {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/tmp',
        PORT: '0',
        ...steadyWindowEnv(env),
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const stdout: string[] = [];
  const stderr: string[] = [];
  const probes: Array<(p: Probe) => void> = [];
  let onUrl: (url: string) => void;
  let onFail: (err: Error) => void;
  const url = new Promise<string>((resolve, reject) => {
    onUrl = resolve;
    onFail = reject;
  });
  url.catch(() => {});
  let outBuf = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout.push(chunk);
    outBuf += chunk;
    const m = /"url":"(http:\/\/[^"]+)"/.exec(outBuf);
    if (m) onUrl(m[1]!);
    if (outBuf.length > 100_000) outBuf = outBuf.slice(-1000);
  });
  let errBuf = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    errBuf += chunk;
    let nl = errBuf.indexOf('\n');
    while (nl >= 0) {
      const line = errBuf.slice(0, nl);
      errBuf = errBuf.slice(nl + 1);
      if (line.startsWith('{"probe":')) probes.shift()?.(JSON.parse(line).probe);
      else stderr.push(`${line}\n`);
      nl = errBuf.indexOf('\n');
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      onFail(new Error(`process exited (${code ?? signal}) before listening: ${stderr.join('')}`));
      resolve({ code, signal });
    });
  });
  addLogSource(`process ${child.pid}`, () => stdout.join('') + stderr.join(''));
  return {
    child,
    stdout,
    stderr,
    url,
    exited,
    probe() {
      const answer = new Promise<Probe>((resolve) => probes.push(resolve));
      child.kill('SIGUSR2');
      return within(answer, 10_000, 'probe answer');
    },
    rss() {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
    },
  };
}

/** Stops a process with SIGKILL (if still running) and waits for it. */
export async function killHard(p: NodeProcess): Promise<void> {
  if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await p.exited;
}

/** Dev tokens for processes: the signing key lives in DATA_DIR; create it first, the process loads the same. */
export async function devTokens(dataDir: string) {
  const keys = await loadOrCreateDevKeys(dataDir);
  return async (username: string) => secret((await mintDevToken(keys, { username }, Date.now())).token);
}

// ------------------------------------------------------------------------------------------- raw WebSocket peer

export interface FrameSpec {
  opcode: number;
  payload?: Buffer | string;
  fin?: boolean;
  rsv1?: boolean;
  /** Claim this payload length in the header instead of the real one (the payload is not sent then). */
  claimedLength?: bigint;
  mask?: boolean;
}

/** Encodes one client frame (masked by default, as RFC 6455 requires of clients). */
export function encodeFrame(spec: FrameSpec): Buffer {
  const payload =
    typeof spec.payload === 'string' ? Buffer.from(spec.payload) : (spec.payload ?? Buffer.alloc(0));
  const mask = spec.mask ?? true;
  const length = spec.claimedLength ?? BigInt(payload.length);
  const head: number[] = [(spec.fin === false ? 0 : 0x80) | (spec.rsv1 ? 0x40 : 0) | spec.opcode];
  const maskBit = mask ? 0x80 : 0;
  let ext = Buffer.alloc(0);
  if (length < 126n) head.push(maskBit | Number(length));
  else if (length < 65536n) {
    head.push(maskBit | 126);
    ext = Buffer.alloc(2);
    ext.writeUInt16BE(Number(length));
  } else {
    head.push(maskBit | 127);
    ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(length);
  }
  const key = mask ? randomBytes(4) : Buffer.alloc(0);
  const body = spec.claimedLength !== undefined ? Buffer.alloc(0) : Buffer.from(payload);
  if (mask) for (let i = 0; i < body.length; i++) body[i]! ^= key[i % 4]!;
  return Buffer.concat([Buffer.from(head), ext, key, body]);
}

export interface ServerFrame {
  opcode: number;
  fin: boolean;
  payload: Buffer;
}

/**
 * A WebSocket peer on a plain TCP socket: it does the upgrade by hand and then writes whatever bytes a test
 * wants. It reads the server's frames (unmasked) and reports the close frame and the end of the connection.
 */
export class RawWs {
  readonly frames: ServerFrame[] = [];
  /**
   * The first close frame from the server (answered at once, as a real peer would), or `code: undefined` when
   * the connection ended without one.
   */
  readonly closed: Promise<{ code: number | undefined; reason: string }>;
  /** Resolves when the TCP connection is gone. */
  readonly ended: Promise<void>;
  /** When it went (Date.now()). */
  endedAt: number | undefined;
  /** When the upgrade response arrived (Date.now()). */
  readonly openedAt = Date.now();
  /** Answer the server's close frame (default), or stay silent like a stalled peer. */
  answerClose = true;
  /** Answer pings with pongs, as every WebSocket client does; false makes a half-open (silent) peer. */
  autoPong = true;
  #buf: Buffer = Buffer.alloc(0);
  #closeFrame: { code: number; reason: string } | undefined;
  #onClose: ((v: { code: number | undefined; reason: string }) => void) | undefined;

  private constructor(
    readonly socket: Socket,
    readonly status: number,
    readonly responseHead: string,
    rest: Buffer,
  ) {
    this.ended = new Promise((resolve) =>
      socket.once('close', () => {
        this.endedAt = Date.now();
        resolve();
      }),
    );
    this.closed = new Promise((resolve) => {
      this.#onClose = resolve;
      void this.ended.then(() => resolve(this.#closeFrame ?? { code: undefined, reason: '' }));
    });
    socket.on('data', (d: Buffer) => this.#onData(d));
    socket.on('error', () => {});
    if (rest.length) this.#onData(rest);
  }

  /** Opens a TCP connection and sends an upgrade request; resolves after the response head. */
  static async open(
    url: string,
    options: {
      headers?: Record<string, string> | Array<[string, string]>;
      localAddress?: string;
      /** Bytes sent in the same write as the request (frames that arrive before the server is ready). */
      trailing?: Buffer;
    } = {},
  ): Promise<RawWs> {
    const u = new URL(url);
    const socket = connect({ host: u.hostname, port: Number(u.port), localAddress: options.localAddress });
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const extra = Array.isArray(options.headers) ? options.headers : Object.entries(options.headers ?? {});
    const head = [
      `GET ${u.pathname}${u.search} HTTP/1.1`,
      `Host: ${u.host}`,
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
      'Sec-WebSocket-Version: 13',
      ...extra.map(([k, v]) => `${k}: ${v}`),
      '',
      '',
    ].join('\r\n');
    socket.write(options.trailing ? Buffer.concat([Buffer.from(head), options.trailing]) : head);
    return new Promise<RawWs>((resolve, reject) => {
      let acc = Buffer.alloc(0);
      const onData = (d: Buffer) => {
        acc = Buffer.concat([acc, d]);
        const end = acc.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.off('data', onData);
        socket.off('close', onClose);
        const text = acc.subarray(0, end).toString();
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
        resolve(new RawWs(socket, status, text, acc.subarray(end + 4)));
      };
      const onClose = () => reject(new Error(`connection closed before a response: ${acc.toString()}`));
      socket.on('data', onData);
      socket.once('close', onClose);
      socket.once('error', reject);
    });
  }

  send(spec: FrameSpec): boolean {
    if (this.socket.destroyed) return false;
    return this.socket.write(encodeFrame(spec));
  }

  text(data: string | Buffer): boolean {
    return this.send({ opcode: 0x1, payload: data });
  }

  write(bytes: Buffer): boolean {
    if (this.socket.destroyed) return false;
    return this.socket.write(bytes);
  }

  /** Text payloads received so far, parsed as JSON (arrays flattened). */
  events(): any[] {
    return this.frames
      .filter((f) => f.opcode === 0x1)
      .flatMap((f) => {
        const v = JSON.parse(f.payload.toString());
        return Array.isArray(v) ? v : [v];
      });
  }

  destroy(): void {
    this.socket.destroy();
  }

  #onData(d: Buffer): void {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, d]) : d;
    for (;;) {
      const b = this.#buf;
      if (b.length < 2) return;
      let len = b[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      if (b.length < off + len) return;
      const frame = { opcode: b[0]! & 0x0f, fin: (b[0]! & 0x80) !== 0, payload: b.subarray(off, off + len) };
      this.#buf = b.subarray(off + len);
      this.frames.push(frame);
      if (frame.opcode === 0x9 && this.autoPong && !this.socket.destroyed)
        this.socket.write(encodeFrame({ opcode: 0xa, payload: frame.payload }));
      if (frame.opcode === 0x8 && !this.#closeFrame) {
        this.#closeFrame = {
          code: frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1005,
          reason: frame.payload.subarray(2).toString(),
        };
        this.#onClose?.(this.#closeFrame);
        if (this.answerClose && !this.socket.destroyed) {
          this.socket.write(encodeFrame({ opcode: 0x8, payload: frame.payload.subarray(0, 2) }));
          this.socket.end();
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------------- private PostgreSQL

function postgresBinDir(): string | undefined {
  const fromConfig = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  const candidates: string[] = [];
  if (fromConfig.status === 0) candidates.push(fromConfig.stdout.trim());
  if (existsSync('/usr/lib/postgresql')) {
    for (const v of readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a)))
      candidates.push(`/usr/lib/postgresql/${v}/bin`);
  }
  return candidates.find((d) => existsSync(join(d, 'initdb')) && existsSync(join(d, 'pg_ctl')));
}

/** Whether a private PostgreSQL can be made here (binaries present; as root, a `postgres` user to run them). */
export function privatePostgresPossible(): boolean {
  if (!postgresBinDir()) return false;
  if (process.getuid?.() === 0) return spawnSync('id', ['-u', 'postgres']).status === 0;
  return true;
}

/**
 * A PostgreSQL cluster of its own (initdb into a temp dir, its own port and socket directory), which a test may
 * stop and start without touching the machine's shared server. initdb refuses to run as root, so as root it runs
 * as the `postgres` OS user.
 */
export class PrivatePostgres {
  readonly #bin: string;
  readonly #dir: string;
  readonly #asPostgres: boolean;

  private constructor(
    readonly port: number,
    bin: string,
    dir: string,
  ) {
    this.#bin = bin;
    this.#dir = dir;
    this.#asPostgres = process.getuid?.() === 0;
  }

  static async create(): Promise<PrivatePostgres> {
    const bin = postgresBinDir();
    if (!bin) throw new Error('PostgreSQL server binaries (initdb, pg_ctl) not found');
    const dir = mkdtempSync(join(tmpdir(), 'drawchat-pg-'));
    const pg = new PrivatePostgres(await freePort(), bin, dir);
    if (pg.#asPostgres) {
      const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
      const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
      chownSync(dir, uid, gid);
      chmodSync(dir, 0o700);
    }
    pg.#run('initdb', ['-D', pg.#data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync']);
    await pg.start();
    return pg;
  }

  get #data(): string {
    return join(this.#dir, 'data');
  }

  url(database = 'postgres'): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  #run(tool: string, args: string[]): string {
    const cmd = join(this.#bin, tool);
    const [file, argv] = this.#asPostgres ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
    const r = spawnSync(file, argv, { encoding: 'utf8', cwd: this.#dir, timeout: 60_000 });
    if (r.status !== 0) throw new Error(`${tool} failed: ${r.stderr || r.stdout}`);
    return r.stdout;
  }

  async start(): Promise<void> {
    const opts = `-p ${this.port} -k ${this.#dir} -c listen_addresses=127.0.0.1 -c max_connections=100`;
    this.#run('pg_ctl', [
      '-D',
      this.#data,
      '-o',
      opts,
      '-l',
      join(this.#dir, 'log'),
      '-w',
      '-t',
      '30',
      'start',
    ]);
  }

  /** `fast`: disconnect clients, checkpoint, exit (a restart); `immediate`: like a crash. */
  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    this.#run('pg_ctl', ['-D', this.#data, '-m', mode, '-w', '-t', '30', 'stop']);
  }

  async destroy(): Promise<void> {
    try {
      await this.stop('immediate');
    } catch {}
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------------------------------- TCP proxy

/** Forwards a local port to a target port; `cut()` drops every connection and refuses new ones until `restore()`. */
export class TcpProxy {
  readonly #conns = new Set<Socket>();
  #cut = false;

  private constructor(
    readonly server: TcpServer,
    readonly port: number,
  ) {}

  static async start(targetPort: number): Promise<TcpProxy> {
    let proxy: TcpProxy | undefined;
    const server = createTcpServer((client) => {
      if (!proxy || proxy.#cut) {
        client.destroy();
        return;
      }
      const upstream = connect({ host: '127.0.0.1', port: targetPort });
      const pair = [client, upstream];
      for (const s of pair) {
        proxy.#conns.add(s);
        s.on('error', () => {});
        s.on('close', () => {
          proxy!.#conns.delete(s);
          for (const o of pair) o.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    proxy = new TcpProxy(server, (server.address() as { port: number }).port);
    return proxy;
  }

  cut(): void {
    this.#cut = true;
    for (const s of this.#conns) s.destroy();
  }

  restore(): void {
    this.#cut = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

// ------------------------------------------------------------------------------------------- metrics

/** One sample of a Prometheus text exposition (sum over label sets when `labels` is omitted). */
export async function metric(base: string, name: string, labels?: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    if (labels !== undefined && !(m[2] ?? '').includes(labels)) continue;
    sum += Number(m[3]);
  }
  return sum;
}

export const sha = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 12);

// ------------------------------------------------------------------------------------------- tokens and JWKS

export interface RsaKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicJwk: Record<string, unknown>;
}

export function rsaKey(kid: string): RsaKey {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    kid,
    privateKey,
    publicKey,
    publicJwk: { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' },
  };
}

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/**
 * A compact JWS built by hand, so a test controls every header field (jose refuses to produce some of the
 * shapes an attacker sends). `key`: RS256 with a private key, HS256 with a secret, or none (empty signature).
 * The token is registered as a secret.
 */
export function signJws(
  header: Record<string, unknown>,
  claims: Record<string, unknown>,
  key: { rsa: KeyObject } | { hmac: Buffer | string } | 'none',
): string {
  const input = `${b64(header)}.${b64(claims)}`;
  let signature = '';
  if (key !== 'none' && 'rsa' in key)
    signature = sign('sha256', Buffer.from(input), key.rsa).toString('base64url');
  else if (key !== 'none') signature = createHmac('sha256', key.hmac).update(input).digest('base64url');
  return secret(`${input}.${signature}`);
}

/** A JWKS endpoint on 127.0.0.1 that counts requests and can be broken, switched off and on (same port). */
export class JwksServer {
  keys: Array<Record<string, unknown>> = [];
  status = 200;
  /** Reset every connection without an answer (the endpoint is there but unusable). */
  reset = false;
  readonly requests: string[] = [];
  port = 0;
  readonly #server: HttpServer = createHttpServer((req, res) => {
    this.requests.push(req.url ?? '');
    if (this.reset) {
      req.socket.destroy();
      return;
    }
    if (this.status !== 200) {
      res.writeHead(this.status).end('broken');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: this.keys }));
  });

  get url(): string {
    return `http://127.0.0.1:${this.port}/jwks`;
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.port, '127.0.0.1', () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    this.port = (this.#server.address() as { port: number }).port;
  }

  /** Stops listening (connections are refused) but keeps the port for `start()`. */
  async stop(): Promise<void> {
    if (!this.#server.listening) return;
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
