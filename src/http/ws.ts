import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIPv6, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import proxyAddr from '@fastify/proxy-addr';
import { parse as parseQuery } from 'fast-querystring';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { RawData, WebSocket, WebSocketServer } from 'ws';
import type { ChatService, ChatUser, Log } from '../chat/chat-service.js';
import { initEventJson } from '../chat/wire.js';
import type { Settings } from '../config/settings.js';
import type { Clock } from '../domain/clock.js';
import { Deadlines } from '../domain/deadlines.js';
import { type SlackMs, TokenBucket, TokenBucketLimiter } from '../domain/rate-limit.js';
import type { Metrics } from '../observability/metrics.js';
import { CloseCode } from '../protocol/close-codes.js';
import { ChatError, type ErrorCode } from '../protocol/errors.js';
import {
  CLIENT_COMMAND_TYPES,
  type ClientCommand,
  ClientCommandParser,
  type ServerEvent,
} from '../protocol/messages.js';
import type { HubConnection } from '../realtime/hub.js';
import type { ConnectionSlot } from '../realtime/limits.js';
import { processReadLagMs } from '../realtime/read-lag.js';
import { isStoreUnavailable, UNAVAILABLE_RETRY_MS } from '../store/errors.js';
import type { Authenticator } from './authenticate.js';
import { sendError } from './errors.js';
import { WsHubSocket } from './ws-socket.js';

export const WS_PATH = '/live-chat/ws/:session_id';
/** What the upgrade fast path takes (`acceptUpgrade`); any other upgrade request goes through Fastify's router. */
const FAST_PATH = /^\/live-chat\/ws\/([1-9]\d{0,14})(?:\?(.*))?$/s;

/** Frames a client may send before its `init` is out; more than that and it is not a real client. */
const MAX_EARLY_FRAMES = 64;
/**
 * And at most this many bytes of them. Without it 64 frames of LIVE_CHAT_MAX_FRAME_BYTES could park 1 MiB per
 * socket whose token is still being checked (a slow JWKS), times every socket an address may open (issue 6).
 */
const MAX_EARLY_BYTES = 64 * 1024;
/** Server pings every socket this often; one that has not answered the previous ping is dropped. */
const HEARTBEAT_MS = 30_000;
/** The heartbeat's period is cut into this many turns, each visiting the sockets of one slice (1 s at 30 s). */
const HEARTBEAT_SLICES = 30;
/** Frames per connection: bursts of 60, then 30 a second. Beyond: `rate_limited`, and the frame is dropped. */
const FRAME_BURST = 60;
const FRAMES_PER_SECOND = 30;
/** WebSocket ping control frames per connection: bursts of 20, then 5 a second; beyond, the socket is closed. */
const PING_BURST = 20;
const PINGS_PER_SECOND = 5;
/** Refused frames and messages within a minute after which a connection is closed (1008) as abusive. */
const MAX_REFUSALS_PER_MINUTE = 60;
/** Handshakes per client address: bursts of this many (the rest of the per-minute setting refills evenly). */
const HANDSHAKE_BURST = 200;

export interface WsDeps {
  service: ChatService;
  auth: Authenticator;
  settings: Settings;
  metrics: Metrics;
  clock: Clock;
  log: Log;
  /** Heartbeat period (default HEARTBEAT_MS); tests shorten it to see half-open sockets go within seconds. */
  heartbeatMs?: number;
  /**
   * Slack of the per-socket frame and ping buckets (default: this process's read lag, see `ReadLag`): frames a
   * busy node read late and at once are judged by the time they took to send.
   */
  readLagMs?: SlackMs;
}

/**
 * The key of the per-address handshake cap: the address itself for IPv4, its /64 for IPv6 (one subscriber
 * usually holds a whole /64, so per-address keys would let one client rotate through 2^64 of them).
 */
export function addressKey(ip: string): string {
  if (!ip.includes(':')) return ip;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  const address = ip.toLowerCase().split('%')[0]!;
  // Not an address (X-Forwarded-For from a client, with TRUST_PROXY covering clients): keyed as it is.
  if (!isIPv6(address)) return ip;
  const [head = '', tail = ''] = address.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const groups = ip.includes('::')
    ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right]
    : left;
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

/** Is a handshake's Origin acceptable? No Origin (non-browser clients) is; same origin is; else the allow-list. */
export function originAllowed(
  origin: string | undefined,
  host: string | undefined,
  allowed: readonly string[],
) {
  if (origin === undefined) return true;
  if (allowed.includes(origin)) return true;
  if (!URL.canParse(origin)) return false;
  const url = new URL(origin);
  return (
    (url.protocol === 'http:' || url.protocol === 'https:') && url.host === host && url.origin === origin
  );
}

export function wsRoutes(app: FastifyInstance, deps: WsDeps) {
  let nextConnId = 1;
  // Every open socket's token expiry, on one timer.
  const expiries = new Deadlines<SocketSession>(
    () => deps.clock.now(),
    (session) => session.tokenExpired(),
  );
  app.addHook('onClose', async () => expiries.stop());
  const shared: SessionContext = {
    ...deps,
    expiries,
    readLagMs: deps.readLagMs ?? processReadLagMs,
  };
  const perMinute = deps.settings.maxConnectsPerAddressPerMinute;
  const handshakes = new TokenBucketLimiter(Math.min(HANDSHAKE_BURST, perMinute), perMinute / 60, deps.clock);
  const sweep = setInterval(() => handshakes.sweep(), 60_000);
  sweep.unref();
  app.addHook('onClose', async () => clearInterval(sweep));

  // Each socket is visited once a period, in one of HEARTBEAT_SLICES slices (by connection id, so a burst of
  // connections spreads over all of them): pinging every socket in one turn wrote 10,000 pings at once on a full
  // node, holding its event loop, and so every room's tick, for hundreds of ms every period.
  let slice = 0;
  const heartbeat = setInterval(
    () => {
      const visiting = slice;
      slice = (slice + 1) % HEARTBEAT_SLICES;
      for (const ws of app.websocketServer.clients) {
        const session = sessionOf(ws);
        if ((session?.id ?? 0) % HEARTBEAT_SLICES !== visiting) continue;
        if (session?.alive === false) {
          ws.terminate();
          continue;
        }
        if (session) session.alive = false;
        ws.ping();
      }
    },
    (deps.heartbeatMs ?? HEARTBEAT_MS) / HEARTBEAT_SLICES,
  );
  heartbeat.unref();
  app.addHook('onClose', async () => clearInterval(heartbeat));

  app.get(
    WS_PATH,
    {
      websocket: true,
      // Before the upgrade, so a flood from one address costs a 429, not a socket each.
      onRequest: async (request, reply) => {
        const malformed = request.ws ? badHandshake(request.raw) : undefined;
        if (malformed) {
          deps.metrics.errors.inc({ code: 'bad_request' });
          reply.header('sec-websocket-version', '13');
          await sendError(reply, 'bad_request', malformed);
          return;
        }
        // Refused already by the fast path (`acceptUpgrade`), which hands refusals to this route to answer.
        const decision =
          (request.raw as RefusableRequest)[REFUSED] ?? handshakes.tryTake(addressKey(request.ip));
        if (!decision.ok) {
          deps.metrics.errors.inc({ code: 'rate_limited' });
          await sendError(
            reply,
            'rate_limited',
            'Too many connection attempts from this address.',
            decision.retryAfterMs,
          );
        }
      },
      schema: {
        tags: ['websocket'],
        summary: 'The live chat socket (see the WebSocket section of this page)',
        description:
          'Upgrade with `?token=<jwt>`, optionally `&since=<message_id>` to resume and `&batch=1` for array frames.',
      },
    },
    (socket, request) => {
      const session = new SocketSession(
        nextConnId++,
        socket,
        {
          sessionParam: (request.params as { session_id?: string }).session_id ?? '',
          query: request.query as Record<string, unknown>,
          ip: request.ip,
          origin: request.headers.origin,
          host: request.headers.host,
        },
        shared,
      );
      releaseUpgradeRequest(socket, request);
      session.start();
    },
  );

  const trust =
    deps.settings.trustProxy.length > 0 ? proxyAddr.compile([...deps.settings.trustProxy]) : undefined;
  /**
   * The upgrade fast path: a well-formed chat socket request (`GET /live-chat/ws/<id>`, the path exactly) is
   * rate-limited and upgraded here, without Fastify's router, request and reply objects and hooks; each of
   * those is per handshake, and nothing of them is used by a socket (issue 5: handshakes per second). Returns
   * false for anything else (other paths, other methods, a malformed handshake, a refusal to answer with 429), which the caller then
   * hands to Fastify, where `WS_PATH` above and every other route answer as they always did.
   */
  return function acceptUpgrade(wss: WebSocketServer, req: IncomingMessage, socket: Duplex, head: Buffer) {
    // A reconnect storm is a long poll phase of handshakes: what has fallen due meanwhile runs now (LoopGuard).
    deps.service.loop.poke();
    const match = req.method === 'GET' ? FAST_PATH.exec(req.url ?? '') : null;
    // A malformed handshake goes to the route, which answers it with the coded body.
    if (!match || badHandshake(req)) return false;
    let handshake: Handshake;
    try {
      // The client address as Fastify's `request.ip` has it: the peer, or with TRUST_PROXY the forwarded one.
      const ip = (trust ? proxyAddr.all(req, trust).at(-1) : req.socket.remoteAddress) ?? '';
      const decision = handshakes.tryTake(addressKey(ip));
      if (!decision.ok) {
        (req as RefusableRequest)[REFUSED] = decision;
        return false;
      }
      const query = match[2] ? (parseQuery(match[2]) as Record<string, unknown>) : {};
      handshake = { sessionParam: match[1]!, query, ip, origin: req.headers.origin, host: req.headers.host };
    } catch (err) {
      // Nothing of the request may throw out of an 'upgrade' listener (it would end the process): Fastify,
      // which catches what its routes throw, answers it instead.
      deps.log.warn({ err }, 'websocket upgrade: fast path failed, routed');
      return false;
    }
    // The 101 waits in the corked socket until the session has its first answer (`init`, or the close frame of
    // a refusal) and goes out with it in one write: one segment, one wake-up of the client, instead of two. The
    // client cannot send a frame before it has the 101, so nothing is held up but the 101 itself.
    let taken = false;
    socket.cork();
    try {
      wss.handleUpgrade(req, socket, head, (ws) => {
        taken = true;
        wss.emit('connection', ws, req);
        ws.on('error', onWsError);
        try {
          new SocketSession(nextConnId++, ws, handshake, shared).start(socket);
        } catch (err) {
          deps.log.error({ err }, 'websocket open failed');
          socket.uncork();
          ws.terminate();
        }
      });
    } finally {
      // Refused by `ws` (it has written its 400 and ended the socket), or not upgraded in this turn.
      if (!taken) socket.uncork();
    }
    return true;
  };
}

/**
 * What is wrong with an upgrade request's WebSocket headers, if anything (the checks `ws` makes, which it would
 * answer with a 400 of its own, in text/html): answered with the coded body instead.
 */
function badHandshake(req: IncomingMessage): string | undefined {
  if (req.headers['sec-websocket-version'] !== '13') return 'Sec-WebSocket-Version must be 13 (RFC 6455).';
  const key = req.headers['sec-websocket-key'];
  if (typeof key !== 'string' || !/^[+/0-9A-Za-z]{22}==$/.test(key))
    return 'Sec-WebSocket-Key must be 16 bytes in base64 (RFC 6455).';
  return undefined;
}

/** A handshake refused by the fast path, answered (429) by the route. */
const REFUSED = Symbol('drawchat.refused');
type RefusableRequest = IncomingMessage & { [REFUSED]?: ReturnType<TokenBucketLimiter['tryTake']> };

/** What a socket session needs of its upgrade request, read from Fastify's request or from the raw one. */
interface Handshake {
  /** The `:session_id` path segment, unchecked. */
  sessionParam: string;
  query: Record<string, unknown>;
  ip: string;
  origin?: string;
  host?: string;
}

/** What a socket error does: a line at debug (peers vanish mid-frame all the time), and the socket goes. */
export function onSocketError(ws: WebSocket, err: Error, log: Pick<Log, 'debug'>): void {
  log.debug({ err }, 'websocket error');
  // After a protocol error (1009 too large, 1007 bad UTF-8) `ws` is already sending its close frame: let it
  // finish (it destroys the socket itself after its close timeout) so the peer sees the code.
  if (ws.readyState !== ws.CLOSING) ws.terminate();
}

/**
 * An open WebSocket must not keep its upgrade request alive for the hours it stays open: Node's request with
 * every header and the token-bearing URL, Fastify's request and reply (about 5 KB a connection). Two things of
 * @fastify/websocket held them: the HTTP response it attaches to every upgrading TCP socket (to answer refused
 * ones), and its socket 'error' listener, which closes over request and reply. The response is detached and the
 * listener replaced by an equivalent one (`onSocketError`, as the plugin's `errorHandler` in app.ts).
 */
function releaseUpgradeRequest(ws: WebSocket, request: FastifyRequest): void {
  const socket = request.raw.socket as (Socket & { _httpMessage?: ServerResponse | null }) | null;
  const response = socket?._httpMessage;
  if (socket && response && typeof response.detachSocket === 'function') response.detachSocket(socket);
  ws.removeAllListeners('error');
  ws.on('error', onWsError);
}

/**
 * The socket's session, found from the socket. Listeners are shared functions that find their session this way
 * (an emitter calls them with the socket as `this`) instead of closures made per socket: five closures and their
 * contexts are a few hundred bytes on every one of thousands of idle sockets.
 */
const SESSION = Symbol('drawchat.session');
type SessionSocket = WebSocket & { [SESSION]?: SocketSession };

function sessionOf(ws: WebSocket): SocketSession | undefined {
  return (ws as SessionSocket)[SESSION];
}

function onWsMessage(this: WebSocket, data: RawData, isBinary: boolean): void {
  sessionOf(this)?.received(data, isBinary);
}

function onWsClose(this: WebSocket, code: number, reason: Buffer): void {
  sessionOf(this)?.closed(code, reason.toString());
}

function onWsPing(this: WebSocket): void {
  sessionOf(this)?.pinged();
}

function onWsPong(this: WebSocket): void {
  const session = sessionOf(this);
  if (session) session.alive = true;
}

function onWsError(this: WebSocket, err: Error): void {
  onSocketError(this, err, sessionOf(this)?.deps.log ?? NO_LOG);
}

/** For a socket without a session (none: the session is attached before any listener of ours). */
const NO_LOG: Pick<Log, 'debug'> = { debug: () => {} };

/** What every session of this server shares. */
interface SessionContext extends WsDeps {
  expiries: Deadlines<SocketSession>;
  readLagMs: SlackMs;
}

/** A heart as the client library and the widget send it (`JSON.stringify({ type: 'like' })`). */
const LIKE_FRAME = Buffer.from(JSON.stringify({ type: 'like' } satisfies ClientCommand));

/** One client socket: handshake checks, `init`, then commands until it closes. */
class SocketSession {
  #user: ChatUser | undefined;
  #handle: HubConnection | undefined;
  #slot: ConnectionSlot | undefined;
  /** The token's expiry (ms), kept by `deps.expiries` (see `Deadlines`). */
  deadline = 0;
  deadlineSlot = -1;
  /** Answered the last heartbeat ping. */
  alive = true;
  #early: Array<[RawData, boolean]> | undefined = [];
  #earlyBytes = 0;
  /** Frame and ping budgets, made with the first frame or ping (full then, as they would be by that time). */
  #frames: TokenBucket | undefined;
  #pings: TokenBucket | undefined;
  /** Times of refusals in the last minute; created with the first one. */
  #refusals: number[] | undefined;
  #closed = false;
  readonly #openedAt = Date.now();
  readonly #sessionId: number | undefined;
  readonly #batch: boolean;
  readonly #ip: string;
  /**
   * What `#open` needs of the upgrade request, copied so that the request itself (Fastify's request and reply,
   * Node's IncomingMessage with every header) is not kept alive for the hours a socket stays open. Dropped once
   * the socket is open.
   */
  #handshake: Handshake | undefined;
  /** The TCP socket while it holds the 101 back (see `start`). */
  #corked: Duplex | undefined;

  constructor(
    readonly id: number,
    readonly ws: WebSocket,
    handshake: Handshake,
    readonly deps: SessionContext,
  ) {
    (ws as SessionSocket)[SESSION] = this;
    const sid = handshake.sessionParam;
    this.#sessionId = /^[1-9]\d{0,14}$/.test(sid) ? Number(sid) : undefined;
    const query = handshake.query;
    this.#batch = query.batch === '1' || query.batch === 'true';
    this.#ip = handshake.ip;
    this.#handshake = handshake;
  }

  /** `corked`: the TCP socket holding the 101 back (see `acceptUpgrade`), uncorked once `#open` has answered. */
  start(corked?: Duplex): void {
    // Listeners first, synchronously: frames that arrive during the async checks are kept, not lost.
    this.ws.on('message', onWsMessage);
    this.ws.on('close', onWsClose);
    this.ws.on('ping', onWsPing);
    this.ws.on('pong', onWsPong);
    this.deps.metrics.connections.inc();
    this.#corked = corked;
    void this.#open()
      .catch((err) => {
        this.deps.log.error({ err, conn: this.id }, 'websocket open failed');
        this.#refuse(CloseCode.INTERNAL_ERROR, 'internal error');
      })
      .finally(() => this.#uncork());
  }

  #uncork(): void {
    const socket = this.#corked;
    this.#corked = undefined;
    socket?.uncork();
  }

  /** A frame from the client (through `onWsMessage`). */
  received(data: RawData, isBinary: boolean): void {
    if (this.#early) {
      // Closed rather than silently dropped: a client that got no answer would wait for one forever.
      this.#earlyBytes += rawLength(data);
      if (this.#early.length >= MAX_EARLY_FRAMES || this.#earlyBytes > MAX_EARLY_BYTES) {
        this.#early = [];
        this.#abuse('too many frames before init');
        return;
      }
      this.#early.push([data, isBinary]);
      return;
    }
    this.#onFrame(data, isBinary);
  }

  pinged(): void {
    this.#pings ??= new TokenBucket(PING_BURST, PINGS_PER_SECOND, this.deps.clock, this.deps.readLagMs);
    if (!this.#pings.tryTake().ok) this.#abuse('ping flood');
  }

  async #open(): Promise<void> {
    const { settings, service, auth } = this.deps;
    const handshake = this.#handshake!;
    this.#handshake = undefined;
    if (!originAllowed(handshake.origin, handshake.host, settings.corsOrigins)) {
      return this.#refuse(CloseCode.POLICY, 'origin not allowed');
    }
    if (!settings.enabled) return this.#refuse(CloseCode.CHAT_CLOSED, 'chat disabled');
    const query = handshake.query;
    const token = typeof query.token === 'string' ? query.token : '';
    if (token === '') return this.#refuse(CloseCode.UNAUTHORIZED, 'token required');
    let user: ChatUser;
    let expiresAt: number;
    try {
      const verified = await auth.userFromToken(token);
      user = verified.user;
      expiresAt = verified.expiresAt;
    } catch (err) {
      if (err instanceof ChatError && err.code === 'unauthorized') {
        return this.#refuse(CloseCode.UNAUTHORIZED, 'invalid or expired token');
      }
      // Our failure, not the token's (the signing keys cannot be fetched): not 4401, or a client would drop a
      // good token.
      if (err instanceof ChatError && err.code === 'unavailable')
        return this.#refuse(CloseCode.INTERNAL_ERROR, 'signing keys unavailable');
      throw err;
    }
    if (this.#closed) return;
    const sessionId = this.#sessionId;
    if (sessionId === undefined) return this.#refuse(CloseCode.NOT_FOUND, 'no such session');
    try {
      await service.requireActive(sessionId);
    } catch (err) {
      if (err instanceof ChatError && err.code === 'not_found')
        return this.#refuse(CloseCode.NOT_FOUND, 'no such session');
      if (err instanceof ChatError) return this.#refuse(CloseCode.CHAT_CLOSED, 'chat not active');
      throw err;
    }
    if (this.#closed) return;
    const slot = await service.limits.connection(user.userId);
    if (!slot) return this.#refuse(CloseCode.TOO_MANY_CONNECTIONS, 'too many connections');
    if (this.#closed) {
      slot.release();
      return;
    }
    this.#slot = slot;
    this.#user = user;
    this.#handle = service.hub.join({
      sessionId,
      userId: user.userId,
      batch: this.#batch,
      socket: new WsHubSocket(this.ws),
    });
    const sinceRaw = query.since;
    const since = typeof sinceRaw === 'string' && /^\d{1,15}$/.test(sinceRaw) ? Number(sinceRaw) : undefined;
    let init: Awaited<ReturnType<ChatService['initPayload']>>;
    try {
      const epoch = typeof query.epoch === 'string' && query.epoch.length <= 100 ? query.epoch : undefined;
      init = await service.initPayload(user, sessionId, { since, epoch });
    } catch (err) {
      if (err instanceof ChatError) return this.#refuse(CloseCode.CHAT_CLOSED, 'chat not active');
      throw err;
    }
    if (this.#closed) return;
    const initEvent = initEventJson(
      {
        type: 'init',
        session: init.session,
        you: init.you,
        viewer_count: init.session.viewer_count,
        total_likes: init.totalLikes,
        epoch: service.epoch,
      },
      init.messagesJson,
    );
    const frames: Array<ServerEvent | string> = [initEvent];
    if (init.resync) frames.unshift({ type: 'resync_required', reason: init.resync, epoch: service.epoch });
    // A resume also gets the deletions of messages it may still show (ids at or below `since`; none on a resync).
    for (const id of init.deleted)
      frames.push({ type: 'message_deleted', session_id: sessionId, message_id: id });
    service.hub.ready(this.#handle, frames, init.lastMessageId);
    this.deps.log.info(
      {
        conn: this.id,
        user: user.userId,
        session: sessionId,
        since,
        batch: this.#batch,
        ip: this.#ip,
      },
      'websocket open',
    );
    if (sinceRaw !== undefined && since === undefined) {
      this.#error('bad_request', '`since` must be a message id; sent recent history instead.');
    }
    this.#armExpiry(expiresAt);
    const early = this.#early ?? [];
    this.#early = undefined;
    for (const [data, isBinary] of early) this.#onFrame(data, isBinary);
  }

  #refuse(code: number, reason: string): void {
    if (this.#closed) return;
    this.deps.log.info({ conn: this.id, code, reason, ip: this.#ip }, 'websocket refused');
    this.ws.close(code, reason);
  }

  /** The socket closed (through `onWsClose`). */
  closed(code: number, reason: string): void {
    // A mass disconnect (a network blip, a balancer's restart) is a long poll phase of closes: what has fallen due
    // meanwhile runs between two of them, as between frames (see LoopGuard).
    this.deps.service.loop.poke();
    if (this.#closed) return;
    this.#closed = true;
    this.#early = undefined;
    this.#uncork();
    this.deps.expiries.delete(this);
    this.deps.metrics.connections.dec();
    this.#slot?.release();
    if (this.#handle) {
      this.deps.service.hub.leave(this.#handle);
      this.deps.log.info(
        { conn: this.id, user: this.#user?.userId, code, reason, ms: Date.now() - this.#openedAt },
        'websocket close',
      );
    }
  }

  #armExpiry(expiresAt: number): void {
    if (!this.#closed) this.deps.expiries.set(this, expiresAt);
  }

  /** The token's expiry has passed (from `deps.expiries`). */
  tokenExpired(): void {
    if (this.#closed) return;
    this.deps.log.info({ conn: this.id, user: this.#user?.userId }, 'token expired on open socket');
    this.ws.close(CloseCode.UNAUTHORIZED, 'token expired');
  }

  #send(event: ServerEvent): void {
    if (this.#handle) this.deps.service.hub.sendTo(this.#handle, event);
  }

  #error(
    code: ErrorCode,
    message: string,
    extra: { client_msg_id?: string; retry_after_ms?: number } = {},
    counts = true,
  ): void {
    this.deps.metrics.errors.inc({ code });
    // Our failures (internal_error, unavailable during a database outage) never count against the client.
    if (counts && code !== 'internal_error' && code !== 'unavailable') this.#refused();
    this.#send({ type: 'error', code, message, ...extra });
  }

  /** Counts a refusal; a connection that keeps earning them is closed. */
  #refused(): void {
    const now = this.deps.clock.now();
    this.#refusals ??= [];
    const refusals = this.#refusals;
    refusals.push(now);
    while (refusals.length > 0 && refusals[0]! <= now - 60_000) refusals.shift();
    if (refusals.length > MAX_REFUSALS_PER_MINUTE) this.#abuse('too many refused frames');
  }

  #abuse(reason: string): void {
    if (this.#closed) return;
    this.deps.log.warn(
      { conn: this.id, user: this.#user?.userId, ip: this.#ip, reason },
      'abusive client closed',
    );
    this.ws.close(CloseCode.POLICY, reason);
  }

  #onFrame(data: RawData, isBinary: boolean): void {
    // A heart storm is a long poll phase of frames: the commits and ticks that have fallen due meanwhile run
    // between two of them, not after the last (see LoopGuard).
    this.deps.service.loop.poke();
    if (this.#closed || !this.#user) return;
    this.#frames ??= new TokenBucket(FRAME_BURST, FRAMES_PER_SECOND, this.deps.clock, this.deps.readLagMs);
    const allowed = this.#frames.tryTake();
    if (!allowed.ok) {
      // A message refused here names its client_msg_id, as one refused later does, so that the client can show
      // that message as failed (with when to retry) rather than wait for an answer that never comes.
      this.#error('rate_limited', 'Too many frames; slow down.', {
        ...(isBinary ? {} : messageIdOfFrame(data)),
        retry_after_ms: allowed.retryAfterMs,
      });
      return;
    }
    if (isBinary) {
      this.#error('bad_request', 'Send JSON in text frames.');
      return;
    }
    // The commonest frame of a draw, a heart, exactly as the client library sends it: no parse, no schema.
    if (Buffer.isBuffer(data) && data.equals(LIKE_FRAME)) {
      this.#heart();
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(data.toString());
    } catch {
      this.#error('bad_request', 'The frame is not valid JSON.');
      return;
    }
    const command = ClientCommandParser.safeParse(parsed);
    if (!command.success) {
      const type = (parsed as { type?: unknown } | null)?.type;
      if (typeof type !== 'string' || !(CLIENT_COMMAND_TYPES as string[]).includes(type)) {
        this.#error(
          'bad_request',
          `Unknown message type; expected one of ${CLIENT_COMMAND_TYPES.join(', ')}.`,
        );
        return;
      }
      const issue = command.error.issues[0];
      this.#error(
        'bad_request',
        `Invalid ${type}: ${issue?.path.join('.') || 'frame'} ${issue?.message ?? 'is invalid'}`,
        typeof (parsed as { client_msg_id?: unknown }).client_msg_id === 'string' && type === 'message'
          ? clientMsgIdOf(parsed)
          : {},
      );
      return;
    }
    this.#run(command.data);
  }

  /** A heart: synchronous where the service can answer at once (see `ChatService.heartFromSocket`). */
  #heart(): void {
    try {
      const pending = this.deps.service.heartFromSocket(this.#user!, this.#handle!.sessionId);
      pending?.catch((err) => this.#failed({ type: 'like' }, err));
    } catch (err) {
      this.#failed({ type: 'like' }, err);
    }
  }

  #run(command: ClientCommand): void {
    void this.#dispatch(command).catch((err) => this.#failed(command, err));
  }

  /** A command that failed, answered with the error event its failure calls for. */
  #failed(command: ClientCommand, err: unknown): void {
    const clientMsgId = command.type === 'message' ? command.client_msg_id : undefined;
    if (err instanceof ChatError) {
      // A heart over the limit is an eager viewer, not an abusive client: it is refused (and says when to tap
      // again) but does not count towards the 1008 close; the frame limit still bounds what such frames cost.
      const counts = !(command.type === 'like' && err.code === 'rate_limited');
      this.#error(
        err.code,
        err.message,
        {
          ...(clientMsgId ? { client_msg_id: clientMsgId } : {}),
          ...(err.retryAfterMs !== undefined ? { retry_after_ms: err.retryAfterMs } : {}),
        },
        counts,
      );
      return;
    }
    if (isStoreUnavailable(err)) {
      // Issue 6: the database is away (a restart); the client retries with the same client_msg_id.
      this.#error('unavailable', 'The database is not reachable right now; retry shortly.', {
        ...(clientMsgId ? { client_msg_id: clientMsgId } : {}),
        retry_after_ms: UNAVAILABLE_RETRY_MS,
      });
      return;
    }
    this.deps.log.error({ err, conn: this.id, type: command.type }, 'command failed');
    this.#error(
      'internal_error',
      'Something went wrong; try again.',
      clientMsgId ? { client_msg_id: clientMsgId } : {},
    );
  }

  async #dispatch(command: ClientCommand): Promise<void> {
    const { service } = this.deps;
    const user = this.#user!;
    const sessionId = this.#handle!.sessionId;
    switch (command.type) {
      case 'message': {
        const { message, toRoom } = await service.sendMessage(user, {
          message: command.message,
          clientMsgId: command.client_msg_id,
          sessionId,
        });
        // A message sent to the room reaches the sender there; a retry of one delivered before only needs its answer.
        if (!toRoom) this.#send({ type: 'new_message', message });
        return;
      }
      case 'like':
        await service.heartFromSocket(user, sessionId);
        return;
      case 'like_message':
      case 'unlike_message': {
        const r = await service.likeMessage(user, command.message_id, command.type === 'like_message');
        if (!r.changed) this.#send({ type: 'message_like_update', message_id: r.message_id, likes: r.likes });
        return;
      }
      case 'auth': {
        // A bad token is `unauthorized`; our own failure (the database away) is answered as any command's is
        // (`unavailable`, retry later), not taken for a bad token.
        const refreshed = await this.deps.auth.userFromToken(command.token).catch((err: unknown) => {
          if (err instanceof ChatError && err.code === 'unauthorized') return undefined;
          throw err;
        });
        if (!refreshed)
          return this.#error(
            'unauthorized',
            'The new token is invalid or expired; the old one still counts until it expires.',
          );
        if (refreshed.user.userId !== user.userId)
          return this.#error('forbidden', 'The new token is for another user.');
        this.#user = { ...user, ...refreshed.user };
        this.#armExpiry(refreshed.expiresAt);
        return;
      }
      case 'ping':
        this.#send({ type: 'pong', server_time: new Date(this.deps.clock.now()).toISOString() });
        return;
    }
  }
}

function rawLength(data: RawData): number {
  if (Array.isArray(data)) return data.reduce((n, b) => n + b.length, 0);
  return data instanceof ArrayBuffer ? data.byteLength : data.length;
}

/** The client_msg_id of a frame that is a `message` (read only for a frame refused unread), if any. */
function messageIdOfFrame(data: RawData): { client_msg_id?: string } {
  // A flood of hearts or pings costs no parse: only a frame that names a client_msg_id is read.
  if (!Buffer.isBuffer(data) || !data.includes('"client_msg_id"')) return {};
  try {
    const parsed: unknown = JSON.parse(data.toString());
    return (parsed as { type?: unknown } | null)?.type === 'message' ? clientMsgIdOf(parsed) : {};
  } catch {
    return {};
  }
}

function clientMsgIdOf(parsed: unknown): { client_msg_id?: string } {
  const id = (parsed as { client_msg_id?: unknown }).client_msg_id;
  return typeof id === 'string' && /^[\x21-\x7e]{1,64}$/.test(id) ? { client_msg_id: id } : {};
}
