import type { JWTPayload } from 'jose';
import { ChatError } from '../../protocol/errors.js';
import { INVISIBLE_ONLY, LONE_SURROGATE } from '../../protocol/http.js';

/** Who a verified token says the caller is. Plain data, frozen by the verifier. */
export interface AuthIdentity {
  /** The token's `sub`. */
  userId: string;
  /** `name`, else `nickname`, from the token; null when the token carries neither. */
  claimName: string | null;
  /** `picture` when it is an http(s) URL; null otherwise. */
  claimPicture: string | null;
  /** Name to show when neither the token nor the draw backend gave one: the email's local part, else `sub`. */
  fallbackName: string;
  /** The host role appears in `roles` or in any `tenants.<id>.roles`. */
  isHost: boolean;
  /** The token's `exp`, in milliseconds since the Unix epoch. */
  expiresAt: number;
}

/**
 * A token was refused. The wire code is always `unauthorized` (it is a `ChatError`, so the transport edge maps it
 * like any other); `reason` is for logs only and never contains the token or its claims' values.
 */
export class AuthError extends ChatError {
  readonly reason: string;

  constructor(reason: string) {
    super('unauthorized');
    this.name = 'AuthError';
    this.reason = reason;
  }
}

/** How long a client should wait when the signing keys could not be fetched (the JWKS retry interval). */
export const KEYS_UNAVAILABLE_RETRY_MS = 2000;

/**
 * The token could not be checked: the JWKS cannot be fetched and no keys from an earlier fetch are at hand (a
 * cold start during an outage of the key endpoint). Our failure, not the token's: the wire code is the retryable
 * `unavailable` (HTTP 503, close 1011), so clients keep their token and retry instead of signing in again.
 */
export class AuthUnavailableError extends ChatError {
  readonly reason: string;

  constructor(reason: string) {
    super('unavailable', 'The sign-in keys cannot be fetched right now; retry shortly.', {
      retryAfterMs: KEYS_UNAVAILABLE_RETRY_MS,
    });
    this.name = 'AuthUnavailableError';
    this.reason = reason;
  }
}

const MAX_SUB_LENGTH = 256;
const MAX_NAME_CODE_POINTS = 100;
const MAX_PICTURE_LENGTH = 2048;
// Keys that would be dangerous if anything downstream ever indexed an object with them.
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** Own property only: claims come from JSON.parse, but an inherited (polluted) property must never count. */
function own(obj: unknown, key: string): unknown {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return undefined;
  return Object.hasOwn(obj, key) ? (obj as Record<string, unknown>)[key] : undefined;
}

/** Trimmed, control characters turned into spaces, capped in code points; null when nothing is left. */
function cleanName(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  // A lone surrogate becomes U+FFFD here, as PostgreSQL would store it (SQLite would keep invalid UTF-8).
  const cleaned = value
    .replace(/\p{Cc}+/gu, ' ')
    .replace(/[\uD800-\uDFFF]/gu, '\uFFFD')
    .trim();
  if (cleaned === '' || INVISIBLE_ONLY.test(cleaned)) return null;
  const points = [...cleaned];
  return points.length > MAX_NAME_CODE_POINTS
    ? points.slice(0, MAX_NAME_CODE_POINTS).join('').trimEnd()
    : cleaned;
}

function cleanPicture(value: unknown): string | null {
  if (typeof value !== 'string' || value.length > MAX_PICTURE_LENGTH || !URL.canParse(value)) return null;
  const url = new URL(value);
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return null;
  // Credentials in an avatar URL would be shown to every viewer.
  if (url.username !== '' || url.password !== '') return null;
  return url.href.length > MAX_PICTURE_LENGTH ? null : url.href;
}

function hasRole(roles: unknown, role: string): boolean {
  return Array.isArray(roles) && roles.some((r) => typeof r === 'string' && r === role);
}

function isHostFromClaims(payload: JWTPayload, hostRole: string): boolean {
  if (hasRole(own(payload, 'roles'), hostRole)) return true;
  const tenants = own(payload, 'tenants');
  if (typeof tenants !== 'object' || tenants === null || Array.isArray(tenants)) return false;
  for (const [tenantId, tenant] of Object.entries(tenants)) {
    if (FORBIDDEN_KEYS.has(tenantId)) continue;
    if (hasRole(own(tenant, 'roles'), hostRole)) return true;
  }
  return false;
}

/**
 * Map a verified token's claims to an identity (SPEC §2). Claims under `nsec` (Descope's client-set claims) are
 * never read. Throws `AuthError` when `sub` is missing, empty, longer than 256 characters or has control
 * characters, or when `exp` is not a number.
 */
export function identityFromClaims(payload: JWTPayload, hostRole: string): AuthIdentity {
  const sub = own(payload, 'sub');
  if (
    typeof sub !== 'string' ||
    sub === '' ||
    sub.length > MAX_SUB_LENGTH ||
    /\p{Cc}/u.test(sub) ||
    LONE_SURROGATE.test(sub)
  ) {
    throw new AuthError('claims: sub missing or invalid');
  }
  const exp = own(payload, 'exp');
  if (typeof exp !== 'number' || !Number.isFinite(exp)) throw new AuthError('claims: exp missing or invalid');

  const claimName = cleanName(own(payload, 'name')) ?? cleanName(own(payload, 'nickname'));
  const email = own(payload, 'email');
  const at = typeof email === 'string' ? email.lastIndexOf('@') : -1;
  const emailLocal = typeof email === 'string' && at > 0 ? cleanName(email.slice(0, at)) : null;

  return {
    userId: sub,
    claimName,
    claimPicture: cleanPicture(own(payload, 'picture')),
    fallbackName: emailLocal ?? cleanName(sub) ?? sub,
    isHost: isHostFromClaims(payload, hostRole),
    expiresAt: exp * 1000,
  };
}
