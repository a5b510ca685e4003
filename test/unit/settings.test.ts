import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadSettings, SETTINGS_DOC, SettingsError } from '../../src/config/settings.js';
import { DrawSchedule } from '../../src/domain/schedule.js';

/** The error loadSettings throws for `env`, or a test failure if it accepts it. */
function refusal(env: Record<string, string>): SettingsError {
  try {
    loadSettings(env);
  } catch (err) {
    expect(err).toBeInstanceOf(SettingsError);
    return err as SettingsError;
  }
  throw new Error(`loadSettings accepted ${JSON.stringify(env)}`);
}

describe('defaults', () => {
  it('[SPEC §7] an empty environment gives every documented default', () => {
    const s = loadSettings({});
    expect(s).toMatchObject({
      enabled: true,
      preDrawHours: 1,
      postDrawHours: 1,
      maxMessagesPerMinute: 10,
      historyLimit: 100,
      maxMessageLength: 500,
      adminApiKey: undefined,
      drawSchedule: undefined,
      drawTimezone: 'UTC',
      drawTimes: [],
      port: 8000,
      host: '127.0.0.1',
      databaseUrl: 'sqlite:./data/live-chat.db',
      redisUrl: undefined,
      authJwksUrl: undefined,
      descopeProjectId: undefined,
      authIssuer: undefined,
      authAudience: undefined,
      authHostRole: 'host',
      maxConnectionsPerUser: 5,
      maxFrameBytes: 16384,
      trustProxy: [],
      corsOrigins: [],
      logLevel: 'info',
      production: false,
      devAuth: true,
    });
    expect(Object.isFrozen(s)).toBe(true);
  });

  it('the data directory (dev signing key) is the SQLite file’s directory, as the store reads the URL', () => {
    const dirOf = (url: string) => loadSettings({ DATABASE_URL: url }).dataDir;
    expect(dirOf('sqlite:./data/live-chat.db')).toBe('./data');
    expect(dirOf('sqlite:chat.db')).toBe('.');
    expect(dirOf('sqlite:rel/x.db')).toBe('rel');
    expect(dirOf('sqlite://rel/x.db')).toBe('rel');
    expect(dirOf('sqlite:///srv/chat/x.db')).toBe('/srv/chat');
    expect(dirOf('sqlite:/x.db')).toBe('/');
    expect(dirOf('sqlite::memory:')).toBe('./data');
    expect(dirOf('postgres://u@h/db')).toBe('./data');
    expect(loadSettings({ DATABASE_URL: 'sqlite:chat.db', DATA_DIR: '/keys' }).dataDir).toBe('/keys');
  });

  it('[SPEC §7] SETTINGS_DOC states the SPEC defaults', () => {
    const doc = Object.fromEntries(SETTINGS_DOC.map(([name, def]) => [name, def]));
    expect(doc).toMatchObject({
      LIVE_CHAT_ENABLED: 'true',
      LIVE_CHAT_PRE_DRAW_HOURS: '1',
      LIVE_CHAT_POST_DRAW_HOURS: '1',
      LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE: '10',
      LIVE_CHAT_MESSAGE_HISTORY_LIMIT: '100',
      LIVE_CHAT_MAX_MESSAGE_LENGTH: '500',
      LIVE_CHAT_ADMIN_API_KEY: 'none',
      DRAW_SCHEDULE: 'hourly',
      DRAW_TIMEZONE: 'UTC',
      DRAW_TIMES: 'none',
      PORT: '8000',
      HOST: '127.0.0.1',
      DATABASE_URL: 'sqlite:./data/live-chat.db',
      REDIS_URL: 'none',
      AUTH_JWKS_URL: 'none',
      DESCOPE_PROJECT_ID: 'none',
      AUTH_ISSUER: 'none',
      AUTH_AUDIENCE: 'none',
      AUTH_HOST_ROLE: 'host',
      LIVE_CHAT_MAX_CONNECTIONS_PER_USER: '5',
      LIVE_CHAT_MAX_FRAME_BYTES: '16384',
      TRUST_PROXY: 'none',
      CORS_ORIGINS: 'none',
      LOG_LEVEL: 'info',
    });
  });

  it('[SPEC §3] the default schedule (no DRAW_SCHEDULE, no DRAW_TIMES) keeps the chat open', () => {
    const s = loadSettings({});
    const schedule = new DrawSchedule({
      cron: s.drawSchedule,
      timezone: s.drawTimezone,
      times: s.drawTimes,
      preDrawHours: s.preDrawHours,
      postDrawHours: s.postDrawHours,
    });
    for (
      let at = Date.parse('2024-05-01T00:00:00Z');
      at < Date.parse('2024-05-01T06:00:00Z');
      at += 11 * 60_000
    ) {
      expect(schedule.phaseAt(at)).not.toBe('closed');
    }
  });
});

describe('accepted values', () => {
  it('[SPEC §3] decimal hours are accepted (and 0)', () => {
    const s = loadSettings({ LIVE_CHAT_PRE_DRAW_HOURS: '0.25', LIVE_CHAT_POST_DRAW_HOURS: '1.5' });
    expect(s.preDrawHours).toBe(0.25);
    expect(s.postDrawHours).toBe(1.5);
    expect(loadSettings({ LIVE_CHAT_PRE_DRAW_HOURS: '0' }).preDrawHours).toBe(0);
  });

  it('[SPEC §3] DRAW_SCHEDULE, DRAW_TIMEZONE and DRAW_TIMES are parsed', () => {
    const s = loadSettings({
      DRAW_SCHEDULE: '0 20 * * 5',
      DRAW_TIMEZONE: 'Europe/London',
      DRAW_TIMES: '2024-01-05T20:00:00Z, 2024-01-06T20:00:00+01:00',
    });
    expect(s.drawSchedule).toBe('0 20 * * 5');
    expect(s.drawTimezone).toBe('Europe/London');
    expect(s.drawTimes).toEqual([Date.parse('2024-01-05T20:00:00Z'), Date.parse('2024-01-06T19:00:00Z')]);
  });

  it('[SPEC §7] a very high message rate limit is accepted (load tests)', () => {
    expect(loadSettings({ LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE: '1000000' }).maxMessagesPerMinute).toBe(
      1_000_000,
    );
  });

  it('[SPEC §7] LIVE_CHAT_ENABLED=false turns the chat off', () => {
    expect(loadSettings({ LIVE_CHAT_ENABLED: 'false' }).enabled).toBe(false);
    expect(loadSettings({ LIVE_CHAT_ENABLED: 'TRUE' }).enabled).toBe(true);
  });
});

describe('dev auth detection', () => {
  it('[SPEC §2] no JWKS source outside production → dev auth', () => {
    expect(loadSettings({}).devAuth).toBe(true);
    expect(loadSettings({ NODE_ENV: 'test' }).devAuth).toBe(true);
  });

  it('[SPEC §2] AUTH_JWKS_URL or DESCOPE_PROJECT_ID → real auth, also in production', () => {
    expect(loadSettings({ AUTH_JWKS_URL: 'https://issuer.example.com/jwks' }).devAuth).toBe(false);
    expect(loadSettings({ DESCOPE_PROJECT_ID: 'P2abc' }).devAuth).toBe(false);
    const prod = loadSettings({ NODE_ENV: 'production', DESCOPE_PROJECT_ID: 'P2abc' });
    expect(prod.production).toBe(true);
    expect(prod.devAuth).toBe(false);
  });

  it('[SPEC §2] AUTH_JWKS_URL and DESCOPE_PROJECT_ID together: keys from the URL, the project id for the issuer', () => {
    const both = loadSettings({
      AUTH_JWKS_URL: 'https://keys.example.com/jwks',
      DESCOPE_PROJECT_ID: 'P2abc',
    });
    expect(both.devAuth).toBe(false);
    expect(both.authJwksUrl).toBe('https://keys.example.com/jwks');
    expect(both.descopeProjectId).toBe('P2abc');
  });

  it('[SPEC §7] an admin key shorter than 16 characters starts outside production, and is refused in it', () => {
    expect(loadSettings({ LIVE_CHAT_ADMIN_API_KEY: 'admin-key' }).adminApiKey).toBe('admin-key');
    expect(
      loadSettings({
        LIVE_CHAT_ADMIN_API_KEY: 'x'.repeat(16),
        NODE_ENV: 'production',
        DESCOPE_PROJECT_ID: 'P2abc',
      }).adminApiKey,
    ).toBe('x'.repeat(16));
    expect(
      refusal({
        LIVE_CHAT_ADMIN_API_KEY: 'x'.repeat(15),
        NODE_ENV: 'production',
        DESCOPE_PROJECT_ID: 'P2abc',
      }).message,
    ).toMatch(/^Invalid setting LIVE_CHAT_ADMIN_API_KEY: must be at least 16 characters/);
  });

  it('[SPEC §2] an http: JWKS URL is accepted for loopback addresses', () => {
    expect(loadSettings({ AUTH_JWKS_URL: 'http://127.0.0.1:9999/jwks' }).authJwksUrl).toBe(
      'http://127.0.0.1:9999/jwks',
    );
    expect(loadSettings({ AUTH_JWKS_URL: 'http://localhost:9999/jwks' }).devAuth).toBe(false);
    expect(loadSettings({ AUTH_JWKS_URL: 'http://[::1]:9999/jwks' }).devAuth).toBe(false);
  });

  it('[SPEC §2] NODE_ENV=production without a JWKS source is refused (no dev auth in production)', () => {
    const err = refusal({ NODE_ENV: 'production' });
    expect(err.message).toMatch(/^Invalid setting AUTH_JWKS_URL\b/);
    expect(err.message).toContain('NODE_ENV=production');
    expect(err.message).toContain('DESCOPE_PROJECT_ID');
  });
});

describe('invalid settings stop start-up with one line naming the setting', () => {
  const cases: [string, Record<string, string>][] = [
    ['LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE', { LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE: '0' }],
    ['LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE', { LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE: 'abc' }],
    ['LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE', { LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE: '1.5' }],
    ['LIVE_CHAT_PRE_DRAW_HOURS', { LIVE_CHAT_PRE_DRAW_HOURS: '-1' }],
    ['LIVE_CHAT_POST_DRAW_HOURS', { LIVE_CHAT_POST_DRAW_HOURS: 'one' }],
    ['LIVE_CHAT_MESSAGE_HISTORY_LIMIT', { LIVE_CHAT_MESSAGE_HISTORY_LIMIT: '0' }],
    ['LIVE_CHAT_MAX_MESSAGE_LENGTH', { LIVE_CHAT_MAX_MESSAGE_LENGTH: '-5' }],
    [
      'LIVE_CHAT_ADMIN_API_KEY',
      { LIVE_CHAT_ADMIN_API_KEY: 'short', NODE_ENV: 'production', DESCOPE_PROJECT_ID: 'P2abc' },
    ],
    ['DRAW_TIMEZONE', { DRAW_TIMEZONE: 'Mars/Base' }],
    ['DRAW_SCHEDULE', { DRAW_SCHEDULE: 'bad' }],
    ['DRAW_SCHEDULE', { DRAW_SCHEDULE: '0 0 20 * * 5' }],
    ['DRAW_SCHEDULE', { DRAW_SCHEDULE: '0 25 * * *' }],
    ['DRAW_SCHEDULE', { DRAW_SCHEDULE: '0 0 31 2 *' }],
    ['DRAW_SCHEDULE', { DRAW_SCHEDULE: '0 20 * * 5\nrm -rf' }],
    ['DRAW_TIMES', { DRAW_TIMES: 'yesterday' }],
    ['DRAW_TIMES', { DRAW_TIMES: '2024-01-05T20:00:00Z,1704484800' }],
    ['PORT', { PORT: '70000' }],
    ['DATABASE_URL', { DATABASE_URL: 'mysql://x' }],
    ['REDIS_URL', { REDIS_URL: 'http://cache:6379' }],
    ['AUTH_JWKS_URL', { AUTH_JWKS_URL: 'http://example.com/jwks' }],
    ['AUTH_JWKS_URL', { AUTH_JWKS_URL: 'not a url' }],
    ['DESCOPE_PROJECT_ID', { DESCOPE_PROJECT_ID: 'P2 abc' }],
    ['DESCOPE_BASE_URL', { DESCOPE_PROJECT_ID: 'P2abc', DESCOPE_BASE_URL: 'http://auth.example.com' }],
    ['LIVE_CHAT_MAX_CONNECTIONS_PER_USER', { LIVE_CHAT_MAX_CONNECTIONS_PER_USER: '0' }],
    ['LIVE_CHAT_MAX_FRAME_BYTES', { LIVE_CHAT_MAX_FRAME_BYTES: '10' }],
    ['TRUST_PROXY', { TRUST_PROXY: 'lb.internal' }],
    ['TRUST_PROXY', { TRUST_PROXY: '999.1.1.1' }],
    ['TRUST_PROXY', { TRUST_PROXY: '10.0.0.0/40' }],
    ['TRUST_PROXY', { TRUST_PROXY: '::1/129' }],
    ['TRUST_PROXY', { TRUST_PROXY: '10.0.0.1/8/8' }],
    ['CORS_ORIGINS', { CORS_ORIGINS: 'https://a.com/path' }],
    ['LOG_LEVEL', { LOG_LEVEL: 'loud' }],
    ['LIVE_CHAT_ENABLED', { LIVE_CHAT_ENABLED: 'maybe' }],
    ['AUTH_JWKS_URL', { NODE_ENV: 'production' }],
  ];

  for (const [name, env] of cases) {
    it(`[SPEC §7] ${JSON.stringify(env)} is refused naming ${name}, on one line`, () => {
      const { message } = refusal(env);
      expect(message).toMatch(new RegExp(`^Invalid setting ${name}\\b`));
      expect(message).not.toMatch(/[\r\n]/);
    });
  }

  it('[SPEC §7] TRUST_PROXY takes IPv4 and IPv6 addresses and ranges', () => {
    expect(
      loadSettings({ TRUST_PROXY: '10.0.0.0/8, 127.0.0.1,::1,fd00::/8,192.168.1.7/32' }).trustProxy,
    ).toEqual(['10.0.0.0/8', '127.0.0.1', '::1', 'fd00::/8', '192.168.1.7/32']);
  });

  it('[SPEC §3] an invalid DRAW_SCHEDULE says what it got and why', () => {
    expect(refusal({ DRAW_SCHEDULE: 'bad' }).message).toBe(
      'Invalid setting DRAW_SCHEDULE (got "bad"): must have 5 fields (minute hour day month weekday)',
    );
    expect(refusal({ DRAW_SCHEDULE: '0 25 * * *', DRAW_TIMEZONE: 'Europe/London' }).message).toMatch(
      /^Invalid setting DRAW_SCHEDULE \(got "0 25 \* \* \*"\): .*hour/,
    );
  });

  it('[SPEC §7] the admin key is never echoed in the error', () => {
    expect(
      refusal({ LIVE_CHAT_ADMIN_API_KEY: 'tooshort', NODE_ENV: 'production', DESCOPE_PROJECT_ID: 'P2abc' })
        .message,
    ).not.toContain('tooshort');
  });
});

describe('README settings table', () => {
  it('[SPEC §7] README.md lists exactly the settings of SETTINGS_DOC', () => {
    const path = fileURLToPath(new URL('../../README.md', import.meta.url));
    if (!existsSync(path)) {
      expect.fail(
        `README.md is missing (${path}): it must document every setting of SETTINGS_DOC in a table`,
      );
    }
    // Rows of any Markdown table whose first cell names settings in backticks (a cell may group several).
    const documented = new Set<string>();
    for (const line of readFileSync(path, 'utf8').split('\n')) {
      const row = /^\s*\|([^|]*)\|/.exec(line);
      if (!row) continue;
      for (const [, name] of row[1]!.matchAll(/`([A-Z][A-Z0-9_]+)`/g)) documented.add(name!);
    }
    const expected = SETTINGS_DOC.map(([name]) => name as string);
    const missing = expected.filter((n) => !documented.has(n));
    const unknown = [...documented].filter((n) => !expected.includes(n));
    expect({ missing, unknown }).toEqual({ missing: [], unknown: [] });
  });
});
