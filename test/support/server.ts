import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { loadSettings } from '../../src/config/settings.js';
import type { ManualClock } from '../../src/domain/clock.js';
import { loadOrCreateDevKeys, mintDevToken } from '../../src/http/auth/dev-auth.js';
import { createServer, type DrawChatServer, type ServerOptions } from '../../src/server.js';
import { steadyWindowEnv } from './window.js';
import { type ClientOptions, TestClient } from './ws-client.js';

export interface TestServerOptions {
  env?: Record<string, string>;
  /** A manual clock (tests move time); default: the system clock. */
  clock?: ManualClock;
  /** Listen on this port (e.g. to restart a server where its clients expect it); default: any free port. */
  port?: number;
  /** Use this directory (database, dev signing key) and leave it in place on close; default: a fresh temp dir. */
  dataDir?: string;
  /** Test-only server options: short heartbeat, short JWKS cooldown. */
  server?: Pick<ServerOptions, 'auth' | 'heartbeatMs' | 'userReadWindowMs' | 'readLagMs'>;
}

export interface TestServer {
  readonly server: DrawChatServer;
  readonly url: string;
  readonly clock: ManualClock | undefined;
  /** Every log line the server wrote, as text. */
  readonly logs: string[];
  readonly dataDir: string;
  token(username: string, options?: { roles?: string[]; picture?: string }): Promise<string>;
  userId(token: string): string;
  request(
    method: string,
    path: string,
    options?: { token?: string; body?: unknown; headers?: Record<string, string>; rawBody?: string },
  ): Promise<{ status: number; body: any; headers: Headers }>;
  connect(
    sessionId: number | string,
    token: string | undefined,
    options?: ClientOptions & { query?: string },
  ): Promise<TestClient>;
  /** The active session id (from /live-chat/status). */
  sessionId(token: string): Promise<number>;
  close(): Promise<void>;
}

/** A real draw-chat server on an ephemeral port, SQLite in a temp dir unless `env.DATABASE_URL` says otherwise. */
export async function startServer(options: TestServerOptions = {}): Promise<TestServer> {
  const ownDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'drawchat-'));
  const env = {
    DATABASE_URL: `sqlite:${join(dataDir, 'chat.db')}`,
    PORT: String(options.port ?? 0),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    // A manual clock is the test's own time; on the real one the window must not hand over mid-test.
    ...(options.clock ? {} : steadyWindowEnv(options.env)),
    ...options.env,
  };
  const settings = loadSettings(env);
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      logs.push(chunk.toString());
      if (process.env.TEST_LOGS) process.stderr.write(chunk);
      done();
    },
  });
  const logger = pino({ level: settings.logLevel }, sink);
  const server = await createServer(settings, {
    clock: options.clock,
    logger,
    processMetrics: false,
    ...options.server,
  });
  const url = await server.listen();
  const clients = new Set<TestClient>();
  const devKeys = settings.devAuth ? await loadOrCreateDevKeys(settings.dataDir) : undefined;

  const api: TestServer = {
    server,
    url,
    clock: options.clock,
    logs,
    dataDir,
    async token(username, opts = {}) {
      if (!devKeys) throw new Error('token() needs dev auth mode');
      const now = options.clock?.now() ?? Date.now();
      return (await mintDevToken(devKeys, { username, ...opts }, now)).token;
    },
    userId(token) {
      return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).sub;
    },
    async request(method, path, opts = {}) {
      const headers: Record<string, string> = { ...opts.headers };
      if (opts.token) headers.authorization = `Bearer ${opts.token}`;
      let body: string | undefined = opts.rawBody;
      if (opts.body !== undefined) {
        body = JSON.stringify(opts.body);
        headers['content-type'] ??= 'application/json';
      }
      const res = await fetch(url + path, { method, headers, body });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {}
      return { status: res.status, body: parsed, headers: res.headers };
    },
    async connect(sessionId, token, opts = {}) {
      const params = new URLSearchParams();
      if (token !== undefined) params.set('token', token);
      const query = [params.toString(), opts.query].filter(Boolean).join('&');
      const client = await TestClient.connect(
        `${url.replace('http', 'ws')}/live-chat/ws/${sessionId}?${query}`,
        opts,
      );
      clients.add(client);
      return client;
    },
    async sessionId(token) {
      const status = await api.request('GET', '/live-chat/status', { token });
      if (!status.body.session) throw new Error(`no active session: ${JSON.stringify(status.body)}`);
      return status.body.session.id;
    },
    async close() {
      for (const c of clients) c.terminate();
      await server.close();
      if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return api;
}
