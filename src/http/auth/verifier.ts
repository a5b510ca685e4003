import { createHash, KeyObject, verify as verifySignature, type webcrypto } from 'node:crypto';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  errors,
  type FetchImplementation,
  type JSONWebKeySet,
  type JWTHeaderParameters,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import type { Settings } from '../../config/settings.js';
import type { Clock } from '../../domain/clock.js';
import { DEV_ISSUER, type DevKeys } from './dev-auth.js';
import {
  AuthError,
  type AuthIdentity,
  AuthUnavailableError,
  identityFromClaims,
  KEYS_UNAVAILABLE_RETRY_MS,
} from './identity.js';

export { AuthError, AuthUnavailableError } from './identity.js';

/** Longest token we will look at; anything longer is refused before hashing or crypto. */
export const MAX_TOKEN_LENGTH = 8192;
/** Seconds of clock skew allowed on `exp` and `nbf` (SPEC: at most 10). */
export const CLOCK_TOLERANCE_S = 5;
/** Only algorithm accepted: Descope session tokens and dev tokens are RS256. */
export const ALGORITHMS: readonly string[] = Object.freeze(['RS256']);

const TOKEN_CACHE_MAX_ENTRIES = 10_000;
const TOKEN_CACHE_MAX_AGE_MS = 10 * 60_000;
const DEFAULT_COOLDOWN_MS = 30_000;
const DEFAULT_CACHE_MAX_AGE_MS = 10 * 60_000;
const DEFAULT_FETCH_TIMEOUT_MS = 5000;
// While the JWKS endpoint fails, keys from the last good fetch stay usable this long (see `staleFallback`).
const STALE_KEYS_MAX_AGE_MS = 24 * 60 * 60_000;
/**
 * A token without `kid` is tried against at most this many keys of the set (each try is a signature check, and a
 * refused token is not cached: a key set in rotation has two or three).
 */
const MAX_CANDIDATE_KEYS = 4;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** Counters for metrics and tests. */
export interface VerifierStats {
  /** Tokens that passed full verification (signature and claims). */
  verified: number;
  /** Tokens answered from the verified-token cache, without crypto. */
  cacheHits: number;
  /** Tokens refused, for any reason. */
  rejected: number;
  /** JWKS HTTP requests actually sent (successful or not). */
  jwksFetches: number;
  /** Of those, the ones that failed (network, timeout, non-200, not a JWKS). */
  jwksFetchFailures: number;
}

/** Verifies bearer tokens and maps them to identities. */
export interface TokenVerifier {
  /** Resolves to the caller's identity, or rejects with `AuthError`. */
  verify(token: string): Promise<AuthIdentity>;
  /** `jwks`: production keys from a JWKS URL; `dev`: the service's own dev keys. */
  readonly mode: 'jwks' | 'dev';
  /** Live counters (read-only view). */
  readonly stats: Readonly<VerifierStats>;
  /** Drops cached tokens; later calls to `verify` reject. */
  close(): void;
}

/** Options of `createTokenVerifier`. */
export interface TokenVerifierOptions {
  /** Source of "now" for `exp`/`nbf` and the token cache. */
  clock: Clock;
  /** Required in dev auth mode (`settings.devAuth`); ignored otherwise. */
  devKeys?: DevKeys;
  /** JWKS request timeout, ms. Default 5000. */
  fetchTimeoutMs?: number;
  /**
   * Minimum time between JWKS requests caused by unknown `kid`s (after a success) or by retries (after a
   * failure), ms. Default 30 000. jose measures it with the real clock, not `clock`.
   */
  jwksCooldownMs?: number;
  /** Keys older than this are refetched before use, ms. Default 10 minutes. Real clock. */
  jwksCacheMaxAgeMs?: number;
}

/** The JWKS URL in effect: `AUTH_JWKS_URL`, else derived from `DESCOPE_PROJECT_ID`; undefined in dev mode. */
export function jwksUrlFor(settings: Settings): string | undefined {
  if (settings.authJwksUrl) return settings.authJwksUrl;
  if (settings.descopeProjectId) return `${settings.descopeBaseUrl}/v2/keys/${settings.descopeProjectId}`;
  return undefined;
}

/** Descope issues both `P2abc` and `https://api.descope.com/P2abc` (or a custom domain) for project `P2abc`. */
export function isDescopeIssuer(iss: unknown, projectId: string): boolean {
  if (typeof iss !== 'string') return false;
  if (iss === projectId) return true;
  if (!URL.canParse(iss)) return false;
  const url = new URL(iss);
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return false;
  return url.pathname.split('/').at(-1) === projectId;
}

function isJwkSet(value: unknown): value is JSONWebKeySet {
  return (
    typeof value === 'object' &&
    value !== null &&
    Array.isArray((value as { keys?: unknown }).keys) &&
    (value as { keys: unknown[] }).keys.every((k) => typeof k === 'object' && k !== null && !Array.isArray(k))
  );
}

/** A reason for logs from whatever jose (or we) threw; jose messages never include the token. */
function reasonOf(err: unknown): string {
  if (err instanceof AuthError) return err.reason;
  if (err instanceof errors.JWTExpired) return 'expired';
  if (err instanceof errors.JWTClaimValidationFailed) return `claim ${err.claim}: ${err.reason}`;
  if (err instanceof errors.JOSEAlgNotAllowed) return 'alg not allowed';
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'bad signature';
  if (err instanceof errors.JWKSNoMatchingKey) return 'no key for kid';
  if (err instanceof errors.JWKSMultipleMatchingKeys) return 'several keys for kid';
  if (err instanceof errors.JWKSTimeout) return 'jwks timeout';
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid)
    return `malformed: ${err.message}`;
  if (err instanceof errors.JOSEError) return `${err.code}: ${err.message}`;
  return `jwks unavailable: ${err instanceof Error ? err.message : String(err)}`;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
/** jose's words for a payload that is not a JSON object (kept: logs and alerts may match on them). */
const NOT_A_CLAIMS_SET = 'JWT Claims Set must be a top-level JSON object';

/**
 * A part of a compact JWS (already checked to be base64url characters) as the JSON object it encodes, or
 * undefined: not base64url (4n + 1 characters, which `Buffer` would decode by dropping one), not UTF-8, not
 * JSON, or not an object. One decode and one parse, where jose's `decodeProtectedHeader` and `UnsecuredJWT`
 * decoded the header three times and the payload twice, through `atob`.
 */
function jsonSegment(part: string): Record<string, unknown> | undefined {
  if (part.length % 4 === 1) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(Buffer.from(part, 'base64url')));
  } catch {
    return undefined;
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

interface ClaimOptions {
  issuer: string | undefined;
  audience: string | undefined;
}

function claimFailed(claim: string, reason: 'missing' | 'invalid' | 'check_failed'): AuthError {
  return new AuthError(`claim ${claim}: ${reason}`);
}

/**
 * The claims of a token whose signature has been checked, validated as jose's `jwtVerify` does with
 * `requiredClaims: ['exp']`, `clockTolerance: CLOCK_TOLERANCE_S` and our issuer and audience, in its order and with
 * its reasons (test/integration/auth.test.ts holds the two side by side over a grid of claim sets): present `exp`
 * (then `aud`, `iss` when configured), `iss` equal, `aud` equal or listing it, `iat`, `nbf` and `exp` numbers when
 * present, `nbf` not after now + tolerance, `exp` after now − tolerance (now in whole seconds).
 */
function checkClaims(claims: Record<string, unknown>, options: ClaimOptions, nowMs: number): JWTPayload {
  const { issuer, audience } = options;
  if (issuer !== undefined && !Object.hasOwn(claims, 'iss')) throw claimFailed('iss', 'missing');
  if (audience !== undefined && !Object.hasOwn(claims, 'aud')) throw claimFailed('aud', 'missing');
  if (!Object.hasOwn(claims, 'exp')) throw claimFailed('exp', 'missing');
  if (issuer !== undefined && claims.iss !== issuer) throw claimFailed('iss', 'check_failed');
  if (audience !== undefined) {
    const aud = claims.aud;
    if (!(typeof aud === 'string' ? aud === audience : Array.isArray(aud) && aud.includes(audience))) {
      throw claimFailed('aud', 'check_failed');
    }
  }
  const now = Math.floor(nowMs / 1000);
  const { iat, nbf, exp } = claims;
  if (iat !== undefined && typeof iat !== 'number') throw claimFailed('iat', 'invalid');
  if (nbf !== undefined) {
    if (typeof nbf !== 'number') throw claimFailed('nbf', 'invalid');
    if (nbf > now + CLOCK_TOLERANCE_S) throw claimFailed('nbf', 'check_failed');
  }
  if (typeof exp !== 'number') throw claimFailed('exp', 'invalid');
  if (exp <= now - CLOCK_TOLERANCE_S) throw new AuthError('expired');
  return claims as JWTPayload;
}

/** WebCrypto's key class (a global in Node.js; `@types/node` declares only its type). */
const CryptoKeyClass = (globalThis as unknown as { CryptoKey: abstract new () => webcrypto.CryptoKey })
  .CryptoKey;

/** Keys from the JWKS as `node:crypto` keys, converted once per key. */
const nodeKeys = new WeakMap<webcrypto.CryptoKey, KeyObject>();

/** The key jose picked for an RS256 token, checked as jose checks it before verifying, for `node:crypto`. */
function rs256Key(key: unknown): KeyObject {
  if (!(key instanceof CryptoKeyClass)) throw new AuthError('no usable key');
  const algorithm = key.algorithm as webcrypto.RsaHashedKeyAlgorithm;
  if (
    key.type !== 'public' ||
    algorithm.name !== 'RSASSA-PKCS1-v1_5' ||
    algorithm.hash?.name !== 'SHA-256' ||
    !key.usages.includes('verify')
  ) {
    throw new AuthError('no usable key');
  }
  if (!(algorithm.modulusLength >= 2048)) throw new AuthError('RS256 needs a key of 2048 bits or more');
  let nodeKey = nodeKeys.get(key);
  if (nodeKey === undefined) {
    nodeKey = KeyObject.from(key);
    nodeKeys.set(key, nodeKey);
  }
  return nodeKey;
}

interface CachedToken {
  identity: AuthIdentity;
  /** Wall time (per `clock`) after which the entry is re-verified from scratch. */
  until: number;
}

/**
 * Remote key resolver: jose's `createRemoteJWKSet` (cache, refetch on unknown kid, cooldown) plus two things jose
 * does not do. (1) A failed fetch also starts a cooldown, so a flood of unknown kids while the endpoint is broken
 * is not a flood of requests either (jose only counts cooldown from a success). (2) While fetches fail, keys from
 * the last good fetch keep verifying for up to 24 h, so a JWKS outage longer than `cacheMaxAge` does not log
 * everyone out; unknown kids still fail closed.
 */
function remoteKeys(url: string, options: TokenVerifierOptions, stats: VerifierStats): JWTVerifyGetKey {
  const cooldownMs = options.jwksCooldownMs ?? DEFAULT_COOLDOWN_MS;
  let lastFailureAt = Number.NEGATIVE_INFINITY;
  let lastGood: { jwks: JSONWebKeySet; at: number; local: JWTVerifyGetKey } | undefined;

  const fetchJwks: FetchImplementation = async (href, init) => {
    // Holding no keys at all, every token waits for a fetch: try again sooner (still a trickle, whatever comes).
    const retryMs = lastGood ? cooldownMs : Math.min(cooldownMs, KEYS_UNAVAILABLE_RETRY_MS);
    if (Date.now() - lastFailureAt < retryMs)
      throw new Error('JWKS fetch skipped: cooling down after a failure');
    stats.jwksFetches++;
    try {
      const response = await fetch(href, init);
      if (response.status !== 200) throw new Error(`JWKS endpoint answered ${response.status}`);
      const text = await response.text();
      const json: unknown = JSON.parse(text);
      if (!isJwkSet(json)) throw new Error('JWKS endpoint answered something that is not a JWK set');
      lastGood = { jwks: json, at: Date.now(), local: createLocalJWKSet(json) };
      return new Response(text, { status: 200, headers: { 'content-type': 'application/json' } });
    } catch (err) {
      stats.jwksFetchFailures++;
      lastFailureAt = Date.now();
      throw err;
    }
  };

  const remote = createRemoteJWKSet(new URL(url), {
    cooldownDuration: cooldownMs,
    cacheMaxAge: options.jwksCacheMaxAgeMs ?? DEFAULT_CACHE_MAX_AGE_MS,
    timeoutDuration: options.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS,
    [customFetch]: fetchJwks,
  });

  return async (header, token) => {
    try {
      return await remote(header, token);
    } catch (err) {
      const unknownKid =
        err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys;
      if (unknownKid) throw err;
      // The fetch failed, not the lookup. Without keys to try, the token cannot be judged: say so (retryable).
      if (!lastGood || Date.now() - lastGood.at > STALE_KEYS_MAX_AGE_MS)
        throw new AuthUnavailableError(reasonOf(err));
      // staleFallback: try the keys we had; a kid they lack fails closed.
      try {
        return await lastGood.local(header, token);
      } catch (stale) {
        // Several of them fit a token without `kid`: the caller tries each.
        if (stale instanceof errors.JWKSMultipleMatchingKeys) throw stale;
        throw err;
      }
    }
  };
}

/**
 * Build the token verifier for these settings: JWKS mode (keys from `AUTH_JWKS_URL` or Descope) or dev mode
 * (`settings.devAuth`, keys from `options.devKeys`). RS256 only, `exp` required, 5 s clock tolerance, issuer and
 * audience checked as SPEC §2 says, Descope refresh tokens refused. Verified tokens are cached by SHA-256 until
 * `min(exp, +10 min)`; failures are not cached.
 */
export function createTokenVerifier(settings: Settings, options: TokenVerifierOptions): TokenVerifier {
  const { clock } = options;
  const stats: VerifierStats = {
    verified: 0,
    cacheHits: 0,
    rejected: 0,
    jwksFetches: 0,
    jwksFetchFailures: 0,
  };
  const mode: 'jwks' | 'dev' = settings.devAuth ? 'dev' : 'jwks';

  let getKey: JWTVerifyGetKey;
  let issuer: string | undefined;
  let audience: string | undefined;
  let descopeProjectId: string | undefined;
  if (mode === 'dev') {
    if (!options.devKeys) throw new TypeError('dev auth mode needs devKeys');
    getKey = createLocalJWKSet(options.devKeys.jwks);
    // Dev tokens are minted here without an audience; AUTH_ISSUER/AUTH_AUDIENCE belong to the real issuer.
    issuer = DEV_ISSUER;
  } else {
    const url = jwksUrlFor(settings);
    if (!url) throw new TypeError('no JWKS source configured');
    getKey = remoteKeys(url, options, stats);
    issuer = settings.authIssuer;
    audience = settings.authAudience;
    if (!issuer) descopeProjectId = settings.descopeProjectId;
  }

  const claimOptions: ClaimOptions = { issuer, audience };

  // Insertion-ordered, so the first key is the oldest entry.
  const cache = new Map<string, CachedToken>();
  let closed = false;

  /**
   * A compact JWS (checked by `COMPACT_JWS`), verified as jose's `jwtVerify` does, with its pieces: the header and
   * the algorithm here, the key from the JWKS through jose (`getKey`: kid, kty, use, alg), the key's type and size
   * here, the RS256 signature with `node:crypto` (synchronous: WebCrypto's runs on the thread pool, and the hop
   * there and back cost more than the check itself on a busy server), and the claims here (`checkClaims`, held to
   * `jwtVerify` by test/integration/auth.test.ts), once the signature has been checked.
   */
  async function verifyFully(token: string): Promise<AuthIdentity> {
    let payload: JWTPayload;
    try {
      const [encodedHeader = '', encodedPayload = '', signature = ''] = token.split('.');
      const header = jsonSegment(encodedHeader);
      if (header === undefined) throw new AuthError('malformed: header is not a JSON object');
      if (typeof header.alg !== 'string' || !ALGORITHMS.includes(header.alg)) {
        throw new AuthError('alg not allowed');
      }
      // No extension is understood here, so none may be critical (`b64: false` among them).
      if (header.crit !== undefined) throw new AuthError('malformed: critical header extension');
      const input = Buffer.from(`${encodedHeader}.${encodedPayload}`, 'latin1');
      const signatureBytes = Buffer.from(signature, 'base64url');
      const flattened = { protected: encodedHeader, payload: encodedPayload, signature };
      let candidates: unknown[];
      try {
        candidates = [await getKey(header as JWTHeaderParameters, flattened)];
      } catch (err) {
        // A token without `kid` and a key set with several RSA keys: try each, as jose's jwtVerify does.
        if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw err;
        candidates = [];
        for await (const k of err) {
          candidates.push(k);
          if (candidates.length === MAX_CANDIDATE_KEYS) break;
        }
      }
      const verifies = (candidate: unknown) => {
        // One key: its own error (too small, not RSA). Several: the unusable ones are skipped.
        let key: KeyObject;
        try {
          key = rs256Key(candidate);
        } catch (err) {
          if (candidates.length === 1) throw err;
          return false;
        }
        return verifySignature('sha256', input, key, signatureBytes);
      };
      if (!candidates.some(verifies)) throw new AuthError('bad signature');
      const claims = jsonSegment(encodedPayload);
      if (claims === undefined) throw new AuthError(`malformed: ${NOT_A_CLAIMS_SET}`);
      payload = checkClaims(claims, claimOptions, clock.now());
    } catch (err) {
      throw err instanceof AuthError || err instanceof AuthUnavailableError
        ? err
        : new AuthError(reasonOf(err));
    }
    if (payload.drn === 'DSR') throw new AuthError('refresh token where a session token is expected');
    if (descopeProjectId !== undefined && !isDescopeIssuer(payload.iss, descopeProjectId)) {
      throw new AuthError('claim iss: not the Descope project');
    }
    return Object.freeze(identityFromClaims(payload, settings.authHostRole));
  }

  return {
    mode,
    stats,
    async verify(token: string): Promise<AuthIdentity> {
      try {
        if (closed) throw new AuthError('verifier closed');
        if (typeof token !== 'string' || token === '') throw new AuthError('missing token');
        if (token.length > MAX_TOKEN_LENGTH) throw new AuthError('token too long');
        if (!COMPACT_JWS.test(token)) throw new AuthError('malformed: not a compact JWS');

        const key = createHash('sha256').update(token).digest('base64url');
        const now = clock.now();
        const hit = cache.get(key);
        if (hit) {
          // `until` already includes jose's tolerance (accepted while now < exp + tolerance).
          if (now < hit.until) {
            stats.cacheHits++;
            return hit.identity;
          }
          cache.delete(key);
        }

        const identity = await verifyFully(token);
        stats.verified++;
        if (!closed) {
          if (cache.size >= TOKEN_CACHE_MAX_ENTRIES) {
            const oldest = cache.keys().next();
            if (!oldest.done) cache.delete(oldest.value);
          }
          cache.set(key, {
            identity,
            until: Math.min(identity.expiresAt + CLOCK_TOLERANCE_S * 1000, now + TOKEN_CACHE_MAX_AGE_MS),
          });
        }
        return identity;
      } catch (err) {
        if (err instanceof AuthUnavailableError) throw err;
        stats.rejected++;
        throw err instanceof AuthError ? err : new AuthError(reasonOf(err));
      }
    },
    close(): void {
      closed = true;
      cache.clear();
    },
  };
}
