import { createSign, generateKeyPairSync, KeyObject, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  base64url,
  type CryptoKey,
  createLocalJWKSet,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  type JWK,
  type JWTPayload,
  errors as joseErrors,
  jwtVerify,
  SignJWT,
} from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadSettings } from '../../src/config/settings.js';
import { ManualClock } from '../../src/domain/clock.js';
import { identityFromClaims } from '../../src/http/auth/identity.js';
import {
  AuthError,
  AuthUnavailableError,
  createTokenVerifier,
  type TokenVerifier,
  type TokenVerifierOptions,
} from '../../src/http/auth/verifier.js';

const T0 = Date.parse('2030-01-01T00:00:00Z');
const T0S = T0 / 1000;

/** A JWKS endpoint on 127.0.0.1 that counts requests and can be switched off, broken or rotated. */
class JwksServer {
  keys: JWK[] = [];
  status = 200;
  requests: string[] = [];
  port = 0;
  readonly #server: Server = createServer((req, res) => {
    this.requests.push(req.url ?? '');
    if (this.status !== 200) {
      res.writeHead(this.status).end('broken');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: this.keys }));
  });

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.port, '127.0.0.1', () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    this.port = (this.#server.address() as AddressInfo).port;
  }

  /** Stop listening (connections refused) but keep the port number for a restart. */
  async stop(): Promise<void> {
    if (!this.#server.listening) return;
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

interface TestKey {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
  publicKey: CryptoKey;
}

async function rsaKey(kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  return {
    kid,
    privateKey,
    publicKey,
    publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' },
  };
}

async function sign(
  key: TestKey,
  claims: JWTPayload = {},
  options: { exp?: number | null; kid?: string; header?: Record<string, unknown> } = {},
): Promise<string> {
  const jwt = new SignJWT({ sub: 'U1', iat: T0S, ...claims }).setProtectedHeader({
    alg: 'RS256',
    kid: options.kid ?? key.kid,
    ...options.header,
  });
  if (options.exp !== null) jwt.setExpirationTime(options.exp ?? T0S + 600);
  return jwt.sign(key.privateKey);
}

const servers: JwksServer[] = [];
const verifiers: TokenVerifier[] = [];
let keyA: TestKey;
let keyB: TestKey;
let jwks: JwksServer;

async function newServer(keys: JWK[]): Promise<JwksServer> {
  const server = new JwksServer();
  server.keys = keys;
  await server.start();
  servers.push(server);
  return server;
}

function verifierFor(
  env: Record<string, string>,
  options: Partial<TokenVerifierOptions> = {},
): { verifier: TokenVerifier; clock: ManualClock } {
  const clock = new ManualClock(T0);
  const verifier = createTokenVerifier(loadSettings(env), { clock, ...options });
  verifiers.push(verifier);
  return { verifier, clock };
}

const jwksEnv = (server: JwksServer, extra: Record<string, string> = {}) => ({
  AUTH_JWKS_URL: `${server.url}/jwks`,
  ...extra,
});

async function reasonOf(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => {
      throw new Error('expected the token to be refused');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AuthError);
  const authError = err as AuthError;
  expect(authError.code).toBe('unauthorized');
  expect(authError.status).toBe(401);
  return authError.reason;
}

beforeAll(async () => {
  [keyA, keyB] = await Promise.all([rsaKey('key-a'), rsaKey('key-b')]);
});

afterEach(async () => {
  for (const v of verifiers.splice(0)) v.close();
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

describe('token verification against a JWKS', () => {
  it('accepts a valid token and maps its claims', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks));
    expect(verifier.mode).toBe('jwks');
    const token = await sign(keyA, { name: 'Ada', picture: 'https://x.example/a.png', roles: ['host'] });
    await expect(verifier.verify(token)).resolves.toEqual({
      userId: 'U1',
      claimName: 'Ada',
      claimPicture: 'https://x.example/a.png',
      fallbackName: 'U1',
      isHost: true,
      expiresAt: (T0S + 600) * 1000,
    });
    expect(jwks.requests).toEqual(['/jwks']);
  });

  it('requires exp', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks));
    expect(await reasonOf(verifier.verify(await sign(keyA, {}, { exp: null })))).toContain('exp');
  });

  it('enforces exp with a 5 s tolerance', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks));
    expect(await reasonOf(verifier.verify(await sign(keyA, {}, { exp: T0S - 6 })))).toBe('expired');
    expect(await reasonOf(verifier.verify(await sign(keyA, {}, { exp: T0S - 5 })))).toBe('expired');
    await expect(verifier.verify(await sign(keyA, {}, { exp: T0S - 4 }))).resolves.toMatchObject({
      userId: 'U1',
    });
  });

  it('enforces nbf with a 5 s tolerance', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks));
    expect(await reasonOf(verifier.verify(await sign(keyA, { nbf: T0S + 60 })))).toContain('nbf');
    expect(await reasonOf(verifier.verify(await sign(keyA, { nbf: T0S + 6 })))).toContain('nbf');
    await expect(verifier.verify(await sign(keyA, { nbf: T0S + 4 }))).resolves.toMatchObject({
      userId: 'U1',
    });
  });

  it('checks AUTH_ISSUER when set', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks, { AUTH_ISSUER: 'https://issuer.example' }));
    await expect(verifier.verify(await sign(keyA, { iss: 'https://issuer.example' }))).resolves.toBeDefined();
    expect(await reasonOf(verifier.verify(await sign(keyA, { iss: 'https://evil.example' })))).toContain(
      'iss',
    );
    expect(await reasonOf(verifier.verify(await sign(keyA)))).toContain('iss');
  });

  it('checks AUTH_AUDIENCE when set', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks, { AUTH_AUDIENCE: 'draw-chat' }));
    await expect(verifier.verify(await sign(keyA, { aud: 'draw-chat' }))).resolves.toBeDefined();
    await expect(verifier.verify(await sign(keyA, { aud: ['other', 'draw-chat'] }))).resolves.toBeDefined();
    expect(await reasonOf(verifier.verify(await sign(keyA, { aud: 'other' })))).toContain('aud');
    expect(await reasonOf(verifier.verify(await sign(keyA)))).toContain('aud');
  });

  it('checks neither issuer nor audience when they are not configured', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks));
    await expect(
      verifier.verify(await sign(keyA, { aud: 'anything', iss: 'anyone' })),
    ).resolves.toBeDefined();
  });

  it('refuses alg none', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks));
    const enc = (v: unknown) => base64url.encode(JSON.stringify(v));
    const header = enc({ alg: 'none', typ: 'JWT', kid: keyA.kid });
    const payload = enc({ sub: 'U1', exp: T0S + 600, roles: ['host'] });
    expect(await reasonOf(verifier.verify(`${header}.${payload}.`))).toContain('malformed');
    expect(await reasonOf(verifier.verify(`${header}.${payload}.AAAA`))).toBe('alg not allowed');
    expect(verifier.stats).toMatchObject({ verified: 0, rejected: 2, jwksFetches: 0 });
  });

  it('refuses HS256 signed with the RSA public key as the secret', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks));
    const secret = new TextEncoder().encode(await exportSPKI(keyA.publicKey));
    const token = await new SignJWT({ sub: 'U1', roles: ['host'] })
      .setProtectedHeader({ alg: 'HS256', kid: keyA.kid })
      .setExpirationTime(T0S + 600)
      .sign(secret);
    expect(await reasonOf(verifier.verify(token))).toBe('alg not allowed');
  });

  it('refuses ES256 even when its key is in the JWKS', async () => {
    const ec = await generateKeyPair('ES256');
    const ecJwk = { ...(await exportJWK(ec.publicKey)), kid: 'ec-key', alg: 'ES256' };
    jwks = await newServer([keyA.publicJwk, ecJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks));
    const token = await new SignJWT({ sub: 'U1' })
      .setProtectedHeader({ alg: 'ES256', kid: 'ec-key' })
      .setExpirationTime(T0S + 600)
      .sign(ec.privateKey);
    expect(await reasonOf(verifier.verify(token))).toBe('alg not allowed');
    // An RS256 header pointing at the EC key finds no usable key.
    const mislabelled = await sign(keyA, {}, { kid: 'ec-key' });
    expect(await reasonOf(verifier.verify(mislabelled))).toBe('no key for kid');
  });

  it('rejects a bad signature', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks));
    const forged = await sign(keyB, { roles: ['host'] }, { kid: keyA.kid });
    expect(await reasonOf(verifier.verify(forged))).toBe('bad signature');
    const good = await sign(keyA);
    const [h, , s] = good.split('.');
    const tampered = `${h}.${base64url.encode(JSON.stringify({ sub: 'admin', exp: T0S + 600 }))}.${s}`;
    expect(await reasonOf(verifier.verify(tampered))).toBe('bad signature');
  });

  it('refuses tokens over 8192 characters before any crypto or fetch', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks));
    const token = await sign(keyA, { pad: 'x'.repeat(9000) });
    expect(await reasonOf(verifier.verify(token))).toBe('token too long');
    expect(await reasonOf(verifier.verify(''))).toBe('missing token');
    expect(await reasonOf(verifier.verify('not-a-jwt'))).toContain('malformed');
    expect(jwks.requests).toHaveLength(0);
  });

  it('refuses Descope refresh tokens', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks));
    expect(await reasonOf(verifier.verify(await sign(keyA, { drn: 'DSR' })))).toContain('refresh token');
    await expect(verifier.verify(await sign(keyA, { drn: 'DS' }))).resolves.toBeDefined();
  });

  it("decides every claim set as jose's jwtVerify does, and for the same reason", async () => {
    // The claims are checked in verifier.ts; jose's jwtVerify, given the same key and options, is the oracle.
    jwks = await newServer([keyA.publicJwk]);
    const issuer = 'https://issuer.example';
    const audience = 'draw-chat';
    const { verifier, clock } = verifierFor(jwksEnv(jwks, { AUTH_ISSUER: issuer, AUTH_AUDIENCE: audience }));
    const keySet = createLocalJWKSet({ keys: [keyA.publicJwk] });
    const signer = KeyObject.from(keyA.privateKey as CryptoKey);
    const header = base64url.encode(JSON.stringify({ alg: 'RS256', kid: keyA.kid }));
    const signed = (payload: Buffer) => {
      const input = `${header}.${base64url.encode(payload)}`;
      return `${input}.${createSign('RSA-SHA256').update(input).sign(signer, 'base64url')}`;
    };
    /** What our verifier should say: jose's verdict, then the identity's own checks (sub, a finite exp). */
    const expected = async (token: string, now: number): Promise<string> => {
      try {
        const { payload } = await jwtVerify(token, keySet, {
          algorithms: ['RS256'],
          issuer,
          audience,
          requiredClaims: ['exp'],
          clockTolerance: 5,
          currentDate: new Date(now),
        });
        identityFromClaims(payload, 'host');
        return 'accepted';
      } catch (err) {
        if (err instanceof AuthError) return err.reason;
        if (err instanceof joseErrors.JWTExpired) return 'expired';
        if (err instanceof joseErrors.JWTClaimValidationFailed) return `claim ${err.claim}: ${err.reason}`;
        if (err instanceof joseErrors.JWTInvalid) return `malformed: ${err.message}`;
        throw err;
      }
    };
    const pick = <T>(values: readonly T[], r: number): T => values[r % values.length]!;
    const EXP = [
      undefined,
      T0S - 6,
      T0S - 5,
      T0S - 4,
      T0S,
      T0S + 600,
      '9999999999',
      null,
      Number.POSITIVE_INFINITY,
      -1,
    ];
    const NBF = [undefined, T0S - 60, T0S + 4, T0S + 5, T0S + 6, String(T0S), false];
    const IAT = [undefined, T0S, T0S + 3600, 'yesterday', {}];
    const ISS = [undefined, issuer, `${issuer}/`, [issuer], 5, ''];
    const AUD = [undefined, audience, [audience], ['other', audience], ['other'], [], 'Draw-Chat', 7, [7]];
    const SUB = ['U1', undefined, '', 42];
    const cases: Array<{ payload: Buffer; label: string }> = [];
    // Every value of every claim next to otherwise good claims, then 300 mixed at random (seeded: repeatable).
    const good = { sub: 'U1', iss: issuer, aud: audience, exp: T0S + 600 };
    const json = (claims: Record<string, unknown>) => {
      // Infinity has no JSON form: written as 1e400, which JSON.parse reads as Infinity.
      const text = JSON.stringify(claims, (_k, v) => (v === Number.POSITIVE_INFINITY ? '__INF__' : v));
      return Buffer.from(text.replace('"__INF__"', '1e400'));
    };
    for (const [name, values] of Object.entries({
      exp: EXP,
      nbf: NBF,
      iat: IAT,
      iss: ISS,
      aud: AUD,
      sub: SUB,
    })) {
      for (const v of values) {
        const claims: Record<string, unknown> = { ...good, [name]: v };
        if (v === undefined) delete claims[name];
        cases.push({ payload: json(claims), label: `${name}=${JSON.stringify(v)}` });
      }
    }
    let seed = 7;
    const next = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed;
    };
    for (let i = 0; i < 300; i++) {
      const claims: Record<string, unknown> = {};
      const set = (name: string, v: unknown) => {
        if (v !== undefined) claims[name] = v;
      };
      set('sub', pick(SUB, next()));
      set('iss', pick(ISS, next()));
      set('aud', pick(AUD, next()));
      set('exp', pick(EXP, next()));
      set('nbf', pick(NBF, next()));
      set('iat', pick(IAT, next()));
      cases.push({ payload: json(claims), label: JSON.stringify(claims) });
    }
    // Payloads that are not a JSON object, or not UTF-8.
    // (An empty one is refused before: no compact JWS has an empty part.)
    for (const text of ['[]', 'null', '"claims"', '42', '{"exp":', ' ']) {
      cases.push({ payload: Buffer.from(text), label: `payload ${text}` });
    }
    cases.push({ payload: Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]), label: 'invalid UTF-8' });
    let accepted = 0;
    for (const { payload, label } of cases) {
      const token = signed(payload);
      // At T0, and either side of the end of the 5 s tolerance of exp = T0 - 4 s.
      for (const now of [T0, T0 + 999, T0 + 1000]) {
        clock.set(now);
        const ours = await verifier.verify(token).then(
          () => 'accepted',
          (err: unknown) => (err instanceof AuthError ? err.reason : `not an AuthError: ${String(err)}`),
        );
        const want = await expected(token, now);
        if (want === 'accepted') accepted++;
        expect(ours, `${label} at T0 + ${now - T0} ms`).toBe(want);
      }
    }
    // The grid is not all refusals (nor all acceptances).
    expect(accepted).toBeGreaterThan(20);
    expect(accepted).toBeLessThan(cases.length * 3 - 100);
  });

  it('keeps the token and claim values out of the error', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks, { AUTH_ISSUER: 'good' }));
    const token = await sign(keyA, { iss: 'secret-issuer-value', email: 'ada@example.com' });
    const err = (await verifier.verify(token).catch((e: unknown) => e)) as AuthError;
    const text = JSON.stringify({ message: err.message, reason: err.reason, stack: err.stack });
    expect(text).not.toContain(token.slice(-20));
    expect(text).not.toContain('secret-issuer-value');
    expect(text).not.toContain('ada@example.com');
    expect(err.cause).toBeUndefined();
  });
});

describe('JWKS key cache', () => {
  it('turns 200 random kids into at most 2 JWKS requests', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks));
    const tokens = await Promise.all(
      Array.from({ length: 200 }, () => sign(keyA, {}, { kid: randomBytes(8).toString('hex') })),
    );
    const half = tokens.length / 2;
    const concurrent = await Promise.allSettled(tokens.slice(0, half).map((t) => verifier.verify(t)));
    expect(concurrent.every((r) => r.status === 'rejected')).toBe(true);
    for (const t of tokens.slice(half)) await expect(verifier.verify(t)).rejects.toBeInstanceOf(AuthError);
    expect(jwks.requests.length).toBeLessThanOrEqual(2);
    expect(verifier.stats.jwksFetches).toBe(jwks.requests.length);
    // Known keys still work, without another request.
    const before = jwks.requests.length;
    await expect(verifier.verify(await sign(keyA))).resolves.toBeDefined();
    expect(jwks.requests).toHaveLength(before);
  });

  it('picks up a rotated key with one refetch once the cooldown has passed', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks), { jwksCooldownMs: 300 });
    await expect(verifier.verify(await sign(keyA))).resolves.toBeDefined();
    expect(jwks.requests).toHaveLength(1);

    jwks.keys = [keyB.publicJwk];
    // Inside the cooldown an unknown kid is refused without a request.
    expect(await reasonOf(verifier.verify(await sign(keyB)))).toBe('no key for kid');
    expect(jwks.requests).toHaveLength(1);

    await sleep(350);
    await expect(verifier.verify(await sign(keyB, { name: 'rotated' }))).resolves.toMatchObject({
      claimName: 'rotated',
    });
    expect(jwks.requests).toHaveLength(2);
    // The retired key is gone after the refetch (a new token, so no token-cache hit).
    expect(await reasonOf(verifier.verify(await sign(keyA, { name: 'old' })))).toBe('no key for kid');
  });

  it('keeps cached keys working while the JWKS server is down, fails closed on new kids, recovers', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks), { jwksCooldownMs: 200, fetchTimeoutMs: 1000 });
    await expect(verifier.verify(await sign(keyA))).resolves.toBeDefined();
    await jwks.stop();
    await sleep(250); // past the cooldown, so the new kid below really tries the (dead) server

    await expect(verifier.verify(await sign(keyA, { name: 'during outage' }))).resolves.toMatchObject({
      claimName: 'during outage',
    });
    expect(await reasonOf(verifier.verify(await sign(keyB)))).toContain('jwks unavailable');
    expect(verifier.stats).toMatchObject({ jwksFetches: 2, jwksFetchFailures: 1 });
    // Right after a failure, more unknown kids do not hammer the endpoint.
    for (let i = 0; i < 20; i++) {
      await expect(verifier.verify(await sign(keyB, { i }))).rejects.toBeInstanceOf(AuthError);
    }
    expect(verifier.stats.jwksFetches).toBe(2);

    jwks.keys = [keyA.publicJwk, keyB.publicJwk];
    await jwks.start();
    await sleep(250);
    await expect(verifier.verify(await sign(keyB, { name: 'recovered' }))).resolves.toMatchObject({
      claimName: 'recovered',
    });
    expect(verifier.stats.jwksFetches).toBe(3);
  });

  it('serves known keys from the last good fetch when a refresh fails after cacheMaxAge', async () => {
    jwks = await newServer([keyA.publicJwk]);
    // cacheMaxAge 0: every verification wants a refresh, as after 10 minutes in production.
    const { verifier } = verifierFor(jwksEnv(jwks), { jwksCacheMaxAgeMs: 0, jwksCooldownMs: 60_000 });
    await expect(verifier.verify(await sign(keyA))).resolves.toBeDefined();
    jwks.status = 503;
    await expect(verifier.verify(await sign(keyA, { name: 'stale' }))).resolves.toMatchObject({
      claimName: 'stale',
    });
    expect(await reasonOf(verifier.verify(await sign(keyB)))).toContain('jwks unavailable');
    for (let i = 0; i < 20; i++) await verifier.verify(await sign(keyA, { i }));
    // One good fetch, one failed refresh; then the failure cooldown holds further requests back.
    expect(jwks.requests).toHaveLength(2);
  });

  it('does not hammer a broken JWKS endpoint; holding no keys, it answers `unavailable` (not a bad token) and tries again every 2 s', async () => {
    jwks = await newServer([keyA.publicJwk]);
    jwks.status = 500;
    const { verifier } = verifierFor(jwksEnv(jwks));
    const started = Date.now();
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, async (_, i) => verifier.verify(await sign(keyA, { i }))),
    );
    expect(results.every((r) => r.status === 'rejected')).toBe(true);
    for (let i = 0; i < 50; i++) {
      const err = await verifier.verify(await sign(keyA, { j: i })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AuthUnavailableError);
      expect(err).toMatchObject({ code: 'unavailable', status: 503, retryAfterMs: 2000 });
    }
    expect(jwks.requests.length).toBeLessThanOrEqual(1 + Math.floor((Date.now() - started) / 2000));
    jwks.status = 200;
    await sleep(2100);
    await expect(verifier.verify(await sign(keyA, { name: 'back' }))).resolves.toMatchObject({
      claimName: 'back',
    });
  });

  it('checks a token without `kid` against each key of a set with several (as jose does), and refuses it when none verifies', async () => {
    const keyC = await rsaKey('key-c');
    jwks = await newServer([keyA.publicJwk, keyB.publicJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks));
    const noKid = { header: { kid: undefined } };
    await expect(verifier.verify(await sign(keyB, { name: 'second key' }, noKid))).resolves.toMatchObject({
      claimName: 'second key',
    });
    await expect(verifier.verify(await sign(keyA, { name: 'first key' }, noKid))).resolves.toMatchObject({
      claimName: 'first key',
    });
    expect(await reasonOf(verifier.verify(await sign(keyC, {}, noKid)))).toBe('bad signature');
  });

  it('refuses critical header extensions (an unencoded payload among them), signed or not', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks));
    const enc = (v: unknown) => base64url.encode(JSON.stringify(v));
    const payload = enc({ sub: 'U1', iat: T0S, exp: T0S + 600 });
    const signer = KeyObject.from(keyA.privateKey as CryptoKey);
    for (const extra of [
      { crit: ['exp'], exp: 1 },
      { crit: ['b64'], b64: false },
      { crit: ['urn:x'], 'urn:x': 1 },
      { crit: [] },
    ]) {
      const input = `${enc({ alg: 'RS256', kid: keyA.kid, ...extra })}.${payload}`;
      const token = `${input}.${createSign('RSA-SHA256').update(input).sign(signer, 'base64url')}`;
      expect(await reasonOf(verifier.verify(token)), JSON.stringify(extra)).toMatch(
        /crit|b64|[Ee]xtension|unencoded/,
      );
    }
    expect(verifier.stats.verified).toBe(0);
  });

  it('refuses RS256 with an RSA key under 2048 bits, even when the JWKS lists it', async () => {
    // jose will not make or sign with such a key: node:crypto does both.
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const weakJwk = { ...weak.publicKey.export({ format: 'jwk' }), kid: 'weak', alg: 'RS256', use: 'sig' };
    jwks = await newServer([keyA.publicJwk, weakJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks));
    const enc = (v: unknown) => base64url.encode(JSON.stringify(v));
    const input = `${enc({ alg: 'RS256', kid: 'weak' })}.${enc({ sub: 'U1', iat: T0S, exp: T0S + 600 })}`;
    const token = `${input}.${createSign('RSA-SHA256').update(input).sign(weak.privateKey, 'base64url')}`;
    expect(await reasonOf(verifier.verify(token))).toMatch(/2048/);
    await expect(verifier.verify(await sign(keyA))).resolves.toBeDefined();
  });

  it('ignores jku and embedded jwk headers', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const attacker = await rsaKey('attacker');
    const attackerServer = await newServer([attacker.publicJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks), { jwksCooldownMs: 0 });
    const viaJku = await sign(
      attacker,
      { roles: ['host'] },
      { header: { jku: `${attackerServer.url}/jwks` } },
    );
    expect(await reasonOf(verifier.verify(viaJku))).toBe('no key for kid');
    const viaJwk = await sign(attacker, { roles: ['host'] }, { header: { jwk: attacker.publicJwk } });
    expect(await reasonOf(verifier.verify(viaJwk))).toBe('no key for kid');
    // Same kid as the real key, attacker's key in the header: the real key is used, the signature fails.
    const sameKid = await sign(
      attacker,
      {},
      { kid: keyA.kid, header: { jku: `${attackerServer.url}/jwks` } },
    );
    expect(await reasonOf(verifier.verify(sameKid))).toBe('bad signature');
    expect(attackerServer.requests).toHaveLength(0);
  });
});

describe('Descope', () => {
  const env = (server: JwksServer, extra: Record<string, string> = {}) => ({
    DESCOPE_PROJECT_ID: 'P2abc',
    DESCOPE_BASE_URL: server.url,
    ...extra,
  });

  it('derives the JWKS URL from the project id', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(env(jwks));
    await expect(verifier.verify(await sign(keyA, { iss: 'P2abc' }))).resolves.toBeDefined();
    expect(jwks.requests).toEqual(['/v2/keys/P2abc']);
  });

  it('accepts both issuer forms and nothing else', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(env(jwks));
    for (const iss of ['P2abc', 'https://api.descope.com/P2abc', 'https://auth.example.com/P2abc']) {
      await expect(verifier.verify(await sign(keyA, { iss }))).resolves.toMatchObject({ userId: 'U1' });
    }
    for (const iss of [
      'https://evil.com/notP2abc',
      'https://evil.com/P2abcd',
      'https://api.descope.com/P2abc/extra',
      'P2ab',
      'p2abc',
      'ftp://api.descope.com/P2abc',
    ]) {
      expect(await reasonOf(verifier.verify(await sign(keyA, { iss })))).toContain('iss');
    }
    expect(await reasonOf(verifier.verify(await sign(keyA)))).toContain('iss');
    expect(await reasonOf(verifier.verify(await sign(keyA, { iss: 42 } as unknown as JWTPayload)))).toContain(
      'iss',
    );
  });

  it('lets AUTH_ISSUER replace the project-id rule', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(env(jwks, { AUTH_ISSUER: 'https://auth.example.com/P2abc' }));
    await expect(
      verifier.verify(await sign(keyA, { iss: 'https://auth.example.com/P2abc' })),
    ).resolves.toBeDefined();
    expect(await reasonOf(verifier.verify(await sign(keyA, { iss: 'P2abc' })))).toContain('iss');
  });

  it('with AUTH_JWKS_URL also set, takes the keys from it and still checks the issuer against the project id', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor({
      DESCOPE_PROJECT_ID: 'P2abc',
      AUTH_JWKS_URL: `${jwks.url}/mirror/jwks.json`,
    });
    await expect(
      verifier.verify(await sign(keyA, { iss: 'https://api.descope.com/P2abc' })),
    ).resolves.toMatchObject({
      userId: 'U1',
    });
    expect(await reasonOf(verifier.verify(await sign(keyA, { iss: 'P2other' })))).toContain('iss');
    expect(jwks.requests).toEqual(['/mirror/jwks.json']);
  });

  it('refuses refresh tokens', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(env(jwks));
    expect(await reasonOf(verifier.verify(await sign(keyA, { iss: 'P2abc', drn: 'DSR' })))).toContain(
      'refresh token',
    );
  });
});

describe('verified-token cache', () => {
  it('verifies a token once and answers repeats from the cache', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks));
    const token = await sign(keyA, { name: 'Ada' });
    const first = await verifier.verify(token);
    await jwks.stop(); // a repeat needs neither the network nor RSA
    const second = await verifier.verify(token);
    expect(second).toEqual(first);
    expect(Object.isFrozen(second)).toBe(true);
    expect(verifier.stats).toMatchObject({ verified: 1, cacheHits: 1, rejected: 0 });
  });

  it('rejects a cached token once it expires (with the same tolerance)', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier, clock } = verifierFor(jwksEnv(jwks));
    const token = await sign(keyA, {}, { exp: T0S + 30 });
    await verifier.verify(token);
    clock.advance(34_000);
    await expect(verifier.verify(token)).resolves.toBeDefined();
    expect(verifier.stats.cacheHits).toBe(1);
    clock.advance(2_000);
    expect(await reasonOf(verifier.verify(token))).toBe('expired');
    expect(verifier.stats).toMatchObject({ verified: 1, cacheHits: 1, rejected: 1 });
  });

  it('re-verifies after 10 minutes even when the token lives longer', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier, clock } = verifierFor(jwksEnv(jwks));
    const token = await sign(keyA, {}, { exp: T0S + 3600 });
    await verifier.verify(token);
    clock.advance(9 * 60_000);
    await verifier.verify(token);
    clock.advance(2 * 60_000);
    await verifier.verify(token);
    expect(verifier.stats).toMatchObject({ verified: 2, cacheHits: 1 });
  });

  it('does not cache failures', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier, clock } = verifierFor(jwksEnv(jwks));
    const token = await sign(keyA, { nbf: T0S + 60 });
    await expect(verifier.verify(token)).rejects.toBeInstanceOf(AuthError);
    clock.advance(60_000);
    await expect(verifier.verify(token)).resolves.toBeDefined();
    expect(verifier.stats).toMatchObject({ verified: 1, cacheHits: 0, rejected: 1 });
  });

  it('refuses everything after close()', async () => {
    jwks = await newServer([keyA.publicJwk]);
    const { verifier } = verifierFor(jwksEnv(jwks));
    const token = await sign(keyA);
    await verifier.verify(token);
    verifier.close();
    expect(await reasonOf(verifier.verify(token))).toBe('verifier closed');
  });
});
