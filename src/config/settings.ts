import { isIP } from 'node:net';
import { dirname } from 'node:path';
import { z } from 'zod';
import { validateCronExpression } from '../domain/schedule.js';

/**
 * Every setting draw-chat reads from the environment (or `.env`), with its default and meaning.
 * The README settings table is checked against this list by a unit test.
 */
const bool = (name: string) =>
  z
    .string()
    .trim()
    .toLowerCase()
    .refine((v) => ['true', 'false', '1', '0', 'yes', 'no', 'on', 'off'].includes(v), {
      message: `${name} must be true or false`,
    })
    .transform((v) => ['true', '1', 'yes', 'on'].includes(v));

const positiveInt = z.coerce.number().int().positive();
const nonNegativeHours = z.coerce.number().finite().nonnegative();

const optionalString = z
  .string()
  .trim()
  .transform((v) => (v === '' ? undefined : v))
  .optional();

const commaList = z
  .string()
  .optional()
  .transform((v) =>
    (v ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
  );

export const SETTINGS_DOC = [
  ['LIVE_CHAT_ENABLED', 'true', 'master switch'],
  ['LIVE_CHAT_PRE_DRAW_HOURS', '1', 'window opens this long before the draw (decimal hours allowed)'],
  ['LIVE_CHAT_POST_DRAW_HOURS', '1', 'and closes this long after'],
  [
    'LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE',
    '10',
    'message rate limit per user per session (sliding minute)',
  ],
  [
    'LIVE_CHAT_MESSAGE_HISTORY_LIMIT',
    '100',
    'history page size and maximum (larger `limit` values are clamped)',
  ],
  ['LIVE_CHAT_MAX_MESSAGE_LENGTH', '500', 'maximum message length in characters (Unicode code points)'],
  ['LIVE_CHAT_ADMIN_API_KEY', 'none', 'server-to-server key for the draw backend (`X-Admin-Key`)'],
  ['DRAW_SCHEDULE', 'hourly', '5-field cron expression of the draws, in `DRAW_TIMEZONE`'],
  ['DRAW_TIMEZONE', 'UTC', 'IANA time zone of `DRAW_SCHEDULE`'],
  ['DRAW_TIMES', 'none', 'comma-separated ISO-8601 draw instants (added to `DRAW_SCHEDULE`)'],
  ['PORT', '8000', 'listen port'],
  ['HOST', '127.0.0.1', 'listen address'],
  ['DATABASE_URL', 'sqlite:./data/live-chat.db', '`sqlite:<path>` or `postgres://…`'],
  ['REDIS_URL', 'none', 'set it to run several nodes together'],
  [
    'REDIS_KEY_PREFIX',
    'drawchat:',
    'prefix of every Redis key and channel (to share one Redis between deployments)',
  ],
  ['DATA_DIR', 'beside the SQLite file, else ./data', 'directory for local state: the dev auth signing key'],
  ['AUTH_JWKS_URL', 'none', 'JWKS URL of the token issuer (`http:` only for loopback)'],
  ['DESCOPE_PROJECT_ID', 'none', 'Descope project id; the JWKS URL is derived from it'],
  ['DESCOPE_BASE_URL', 'https://api.descope.com', 'Descope API host, for custom domains'],
  ['AUTH_ISSUER', 'none', 'required `iss` when set'],
  ['AUTH_AUDIENCE', 'none', 'required `aud` when set'],
  ['AUTH_HOST_ROLE', 'host', 'role (in `roles` or `tenants.*.roles`) that makes a user HOST'],
  ['LIVE_CHAT_MAX_CONNECTIONS_PER_USER', '5', 'more sockets for one user are closed 4429'],
  [
    'LIVE_CHAT_MAX_CONNECTS_PER_ADDRESS_PER_MINUTE',
    '1200',
    'WebSocket handshakes per client address per minute (bursts of 200); more get HTTP 429',
  ],
  [
    'LIVE_CHAT_MAX_FRAME_BYTES',
    '16384',
    'larger WebSocket frames are closed 1009; larger HTTP bodies get 413',
  ],
  ['TRUST_PROXY', 'none', 'addresses of load balancers whose `X-Forwarded-For` is believed'],
  [
    'CORS_ORIGINS',
    'none',
    'comma-separated exact origins allowed for CORS and WebSocket (default: same origin)',
  ],
  ['LOG_LEVEL', 'info', 'pino level: fatal, error, warn, info, debug, trace, silent'],
  ['NODE_ENV', 'development', '`production` refuses dev auth'],
] as const;

export type SettingName = (typeof SETTINGS_DOC)[number][0];

const EnvSchema = z.object({
  LIVE_CHAT_ENABLED: bool('LIVE_CHAT_ENABLED').default(true),
  LIVE_CHAT_PRE_DRAW_HOURS: nonNegativeHours.default(1),
  LIVE_CHAT_POST_DRAW_HOURS: nonNegativeHours.default(1),
  LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE: positiveInt.default(10),
  LIVE_CHAT_MESSAGE_HISTORY_LIMIT: positiveInt.max(10_000).default(100),
  LIVE_CHAT_MAX_MESSAGE_LENGTH: positiveInt.max(100_000).default(500),
  // Its length is checked below: at least ADMIN_KEY_MIN_LENGTH in production, a warning at start elsewhere.
  LIVE_CHAT_ADMIN_API_KEY: optionalString,
  DRAW_SCHEDULE: optionalString,
  DRAW_TIMEZONE: z
    .string()
    .trim()
    .default('UTC')
    .refine(
      (tz) => {
        try {
          new Intl.DateTimeFormat('en-US', { timeZone: tz });
          return true;
        } catch {
          return false;
        }
      },
      { message: 'is not an IANA time zone name' },
    ),
  DRAW_TIMES: commaList.transform((items, ctx) => {
    const out: number[] = [];
    for (const item of items) {
      const t = Date.parse(item);
      if (!/^\d{4}-\d{2}-\d{2}T.*(Z|[+-]\d{2}:?\d{2})$/i.test(item) || Number.isNaN(t)) {
        ctx.addIssue({
          code: 'custom',
          message: `${JSON.stringify(item)} is not an ISO-8601 instant with a UTC offset (e.g. 2026-12-04T20:00:00Z)`,
        });
        return z.NEVER;
      }
      out.push(t);
    }
    return out;
  }),
  PORT: z.coerce.number().int().min(0).max(65535).default(8000),
  HOST: z.string().trim().min(1).default('127.0.0.1'),
  DATABASE_URL: z
    .string()
    .trim()
    .default('sqlite:./data/live-chat.db')
    .refine((v) => /^sqlite:.+/.test(v) || /^postgres(ql)?:\/\/.+/.test(v), {
      message: 'must be sqlite:<path> or postgres://…',
    }),
  REDIS_URL: optionalString.refine((v) => v === undefined || /^rediss?:\/\//.test(v), {
    message: 'must be redis://… or rediss://…',
  }),
  REDIS_KEY_PREFIX: z
    .string()
    .trim()
    .regex(/^[A-Za-z0-9:_.-]{1,64}$/, 'must be 1-64 letters, digits or : _ . -')
    .default('drawchat:'),
  DATA_DIR: optionalString,
  AUTH_JWKS_URL: optionalString.refine((v) => v === undefined || URL.canParse(v), {
    message: 'is not a URL',
  }),
  DESCOPE_PROJECT_ID: optionalString.refine((v) => v === undefined || /^[A-Za-z0-9_-]+$/.test(v), {
    message: 'has characters a project id never has',
  }),
  DESCOPE_BASE_URL: z
    .string()
    .trim()
    .default('https://api.descope.com')
    .refine((v) => URL.canParse(v), { message: 'is not a URL' }),
  AUTH_ISSUER: optionalString,
  AUTH_AUDIENCE: optionalString,
  AUTH_HOST_ROLE: z.string().trim().min(1).default('host'),
  LIVE_CHAT_MAX_CONNECTIONS_PER_USER: positiveInt.default(5),
  LIVE_CHAT_MAX_CONNECTS_PER_ADDRESS_PER_MINUTE: positiveInt.default(1200),
  LIVE_CHAT_MAX_FRAME_BYTES: positiveInt
    .min(256)
    .max(16 * 1024 * 1024)
    .default(16384),
  TRUST_PROXY: commaList,
  CORS_ORIGINS: commaList.refine((list) => list.every((o) => URL.canParse(o) && o === new URL(o).origin), {
    message: 'must be exact origins like https://app.example.com (scheme, host, optional port; no path)',
  }),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  NODE_ENV: z.string().trim().default('development'),
});

export interface Settings {
  readonly enabled: boolean;
  readonly preDrawHours: number;
  readonly postDrawHours: number;
  readonly maxMessagesPerMinute: number;
  readonly historyLimit: number;
  readonly maxMessageLength: number;
  readonly adminApiKey: string | undefined;
  readonly drawSchedule: string | undefined;
  readonly drawTimezone: string;
  readonly drawTimes: readonly number[];
  readonly port: number;
  readonly host: string;
  readonly databaseUrl: string;
  readonly redisUrl: string | undefined;
  readonly redisKeyPrefix: string;
  readonly authJwksUrl: string | undefined;
  readonly descopeProjectId: string | undefined;
  readonly descopeBaseUrl: string;
  readonly authIssuer: string | undefined;
  readonly authAudience: string | undefined;
  readonly authHostRole: string;
  readonly maxConnectionsPerUser: number;
  readonly maxConnectsPerAddressPerMinute: number;
  readonly maxFrameBytes: number;
  readonly trustProxy: readonly string[];
  readonly corsOrigins: readonly string[];
  readonly logLevel: string;
  readonly production: boolean;
  /** True when no JWKS source is configured: the service signs its own tokens. */
  readonly devAuth: boolean;
  /** Directory for local state (SQLite file, dev signing key). */
  readonly dataDir: string;
}

/** Raised for an invalid environment; `message` is one line that names the setting. */
export class SettingsError extends Error {
  override name = 'SettingsError';
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK_HOSTS.has(hostname) || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/**
 * The admin key's least length in production (a shorter one is refused there; elsewhere the server starts and
 * logs a warning, see `createServer`).
 */
export const ADMIN_KEY_MIN_LENGTH = 16;

/** Parse, validate, apply defaults, freeze. Throws `SettingsError` naming the first bad setting. */
export function loadSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const input: Record<string, string> = {};
  for (const [name] of SETTINGS_DOC) {
    const value = env[name];
    // A blank value means unset, so `PORT=` in a .env file does not become port 0.
    if (value !== undefined && value.trim() !== '') input[name] = value;
  }
  const parsed = EnvSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const name = String(issue.path[0] ?? 'environment');
    const raw = input[name];
    const shown =
      raw === undefined || name === 'LIVE_CHAT_ADMIN_API_KEY' ? '' : ` (got ${JSON.stringify(raw)})`;
    throw new SettingsError(`Invalid setting ${name}${shown}: ${issue.message}`);
  }
  const e = parsed.data;
  const production = e.NODE_ENV === 'production';

  for (const [name, url] of [
    ['AUTH_JWKS_URL', e.AUTH_JWKS_URL],
    ['DESCOPE_BASE_URL', e.DESCOPE_PROJECT_ID ? e.DESCOPE_BASE_URL : undefined],
  ] as const) {
    if (url === undefined) continue;
    const u = new URL(url);
    if (u.protocol === 'http:' && !isLoopbackHost(u.hostname)) {
      throw new SettingsError(
        `Invalid setting ${name}: http: is allowed only for loopback addresses; use https:`,
      );
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw new SettingsError(`Invalid setting ${name}: must be an https: URL`);
    }
  }
  if (
    production &&
    e.LIVE_CHAT_ADMIN_API_KEY !== undefined &&
    e.LIVE_CHAT_ADMIN_API_KEY.length < ADMIN_KEY_MIN_LENGTH
  ) {
    throw new SettingsError(
      `Invalid setting LIVE_CHAT_ADMIN_API_KEY: must be at least ${ADMIN_KEY_MIN_LENGTH} characters with NODE_ENV=production`,
    );
  }
  // AUTH_JWKS_URL and DESCOPE_PROJECT_ID may both be set: the keys then come from AUTH_JWKS_URL (a proxy or mirror
  // of the project's keys), and the issuer is still checked against the project id unless AUTH_ISSUER names it.
  const devAuth = !e.AUTH_JWKS_URL && !e.DESCOPE_PROJECT_ID;
  if (devAuth && production) {
    throw new SettingsError(
      'Invalid setting AUTH_JWKS_URL: NODE_ENV=production needs AUTH_JWKS_URL or DESCOPE_PROJECT_ID (dev auth is refused in production)',
    );
  }
  if (e.DRAW_SCHEDULE !== undefined) {
    const reason = validateCronExpression(e.DRAW_SCHEDULE, e.DRAW_TIMEZONE);
    if (reason !== null) {
      // JSON.stringify keeps the line one line even if the value holds a newline.
      throw new SettingsError(
        `Invalid setting DRAW_SCHEDULE (got ${JSON.stringify(e.DRAW_SCHEDULE)}): ${reason}`,
      );
    }
  }
  for (const ip of e.TRUST_PROXY) {
    // An address (IPv4 or IPv6) or a range: what the proxy-address check of the HTTP server accepts.
    const [address = '', prefix, extra] = ip.split('/');
    const family = isIP(address);
    const bits = family === 4 ? 32 : 128;
    const prefixOk = prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= bits);
    if (family === 0 || !prefixOk || extra !== undefined) {
      throw new SettingsError(
        `Invalid setting TRUST_PROXY (got ${JSON.stringify(ip)}): must be IP addresses or CIDR ranges`,
      );
    }
  }

  // Beside the SQLite file, read as the store reads the URL (`sqlite:chat.db` is the working directory's).
  const sqlitePath = sqlitePathOf(e.DATABASE_URL);
  const dataDir = e.DATA_DIR ?? (sqlitePath && sqlitePath !== ':memory:' ? dirname(sqlitePath) : './data');

  return Object.freeze({
    enabled: e.LIVE_CHAT_ENABLED,
    preDrawHours: e.LIVE_CHAT_PRE_DRAW_HOURS,
    postDrawHours: e.LIVE_CHAT_POST_DRAW_HOURS,
    maxMessagesPerMinute: e.LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE,
    historyLimit: e.LIVE_CHAT_MESSAGE_HISTORY_LIMIT,
    maxMessageLength: e.LIVE_CHAT_MAX_MESSAGE_LENGTH,
    adminApiKey: e.LIVE_CHAT_ADMIN_API_KEY,
    drawSchedule: e.DRAW_SCHEDULE,
    drawTimezone: e.DRAW_TIMEZONE,
    drawTimes: Object.freeze([...e.DRAW_TIMES]),
    port: e.PORT,
    host: e.HOST,
    databaseUrl: e.DATABASE_URL,
    redisUrl: e.REDIS_URL,
    redisKeyPrefix: e.REDIS_KEY_PREFIX,
    authJwksUrl: e.AUTH_JWKS_URL,
    descopeProjectId: e.DESCOPE_PROJECT_ID,
    descopeBaseUrl: e.DESCOPE_BASE_URL.replace(/\/+$/, ''),
    authIssuer: e.AUTH_ISSUER,
    authAudience: e.AUTH_AUDIENCE,
    authHostRole: e.AUTH_HOST_ROLE,
    maxConnectionsPerUser: e.LIVE_CHAT_MAX_CONNECTIONS_PER_USER,
    maxConnectsPerAddressPerMinute: e.LIVE_CHAT_MAX_CONNECTS_PER_ADDRESS_PER_MINUTE,
    maxFrameBytes: e.LIVE_CHAT_MAX_FRAME_BYTES,
    trustProxy: Object.freeze([...e.TRUST_PROXY]),
    corsOrigins: Object.freeze([...e.CORS_ORIGINS]),
    logLevel: e.LOG_LEVEL,
    production,
    devAuth,
    dataDir,
  });
}

/** The file path of a `sqlite:` URL (`:memory:` stays as is), or undefined for other URLs. */
export function sqlitePathOf(url: string): string | undefined {
  if (!url.startsWith('sqlite:')) return undefined;
  let path = url.slice('sqlite:'.length);
  // Also accept the URL-ish form sqlite:///abs/path or sqlite://rel/path.
  if (path.startsWith('//')) path = path.slice(2);
  return path;
}
