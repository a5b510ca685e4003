import { createHash, randomBytes } from 'node:crypto';
import { chmod, link, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type CryptoKey,
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JWK,
  type KeyObject,
  SignJWT,
} from 'jose';
import { ChatError } from '../../protocol/errors.js';

/** Issuer of dev-mode tokens; the dev-mode verifier accepts no other. */
export const DEV_ISSUER = 'draw-chat-dev';
/** File name of the persisted dev signing key inside the data directory. */
export const DEV_KEY_FILE = 'dev-signing-key.json';
/** Dev tokens are valid this long. */
export const DEV_TOKEN_TTL_MS = 24 * 60 * 60 * 1000;

/** The dev-mode signing key and the public JWKS served at `/.well-known/jwks.json`. */
export interface DevKeys {
  privateKey: CryptoKey | KeyObject;
  jwks: { keys: JWK[] };
  kid: string;
}

const MIN_MODULUS_BYTES = 256; // 2048 bits

async function keysFromPrivateJwk(jwk: JWK): Promise<DevKeys> {
  if (jwk.kty !== 'RSA' || !jwk.n || !jwk.e || !jwk.d || !jwk.p || !jwk.q)
    throw new Error('not an RSA private key');
  if (Buffer.from(jwk.n, 'base64url').length < MIN_MODULUS_BYTES)
    throw new Error('RSA key shorter than 2048 bits');
  const publicJwk: JWK = { kty: 'RSA', n: jwk.n, e: jwk.e };
  const kid = await calculateJwkThumbprint(publicJwk);
  const privateKey = await importJWK({ ...jwk, kty: 'RSA' as const, alg: 'RS256' as const }, 'RS256');
  return { privateKey, kid, jwks: { keys: [{ ...publicJwk, kid, alg: 'RS256', use: 'sig' }] } };
}

/**
 * Load the dev signing key from `<dataDir>/dev-signing-key.json`, or create one (RS256, 2048 bits) when the file
 * is missing or unusable, so dev tokens survive restarts. The file is written with mode 0600; the kid is the
 * key's RFC 7638 thumbprint, so it is stable too.
 */
export async function loadOrCreateDevKeys(dataDir: string): Promise<DevKeys> {
  const file = join(dataDir, DEV_KEY_FILE);
  const existing = await readKeys(file);
  if (existing.keys) return existing.keys;
  const { privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const { kty, n, e, d, p, q, dp, dq, qi } = await exportJWK(privateKey);
  const stored: JWK = { kty, n, e, d, p, q, dp, dq, qi };
  const keys = await keysFromPrivateJwk(stored);

  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  // Write a temporary file first, so a crash never leaves a half-written key behind.
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, `${JSON.stringify({ ...stored, kid: keys.kid, alg: 'RS256' })}\n`, { mode: 0o600 });
    await chmod(tmp, 0o600);
    if (existing.found) {
      // Replace a corrupt key.
      await rename(tmp, file);
      return keys;
    }
    try {
      // link() never overwrites: when several nodes start at once, the first key wins and all of them use it.
      await link(tmp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const winner = await readKeys(file);
      if (winner.keys) return winner.keys;
      await rename(tmp, file);
    }
    return keys;
  } finally {
    await rm(tmp, { force: true });
  }
}

async function readKeys(file: string): Promise<{ found: boolean; keys?: DevKeys }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return { found: false };
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
      return { found: true, keys: await keysFromPrivateJwk(parsed as JWK) };
    }
  } catch {
    // Corrupt or unusable: a fresh key only costs dev users a new sign-in.
  }
  return { found: true };
}

/**
 * Stable user id for a dev username: `dev_` + 16 hex digits of SHA-256 of the username trimmed, with inner
 * whitespace collapsed, NFC-normalised and lower-cased. The same name always maps to the same id.
 */
export function devUserId(username: string): string {
  const normalized = username.trim().replace(/\s+/gu, ' ').normalize('NFC').toLowerCase();
  return `dev_${createHash('sha256').update(normalized, 'utf8').digest('hex').slice(0, 16)}`;
}

/**
 * Sign a dev token (RS256, `kid` header, `iss` `draw-chat-dev`, `sub` from `devUserId`, `name`, optional `picture`
 * and `roles`), valid for 24 hours from `now` (ms). Input is expected to be validated by the route; an empty
 * username is refused here too (`ChatError` `bad_request`).
 */
export async function mintDevToken(
  keys: DevKeys,
  input: { username: string; picture?: string; roles?: string[] },
  now: number,
): Promise<{ token: string; userId: string; expiresAt: number }> {
  const name = input.username.trim();
  if (name === '') throw new ChatError('bad_request', 'username must not be empty');
  const userId = devUserId(name);
  const iat = Math.floor(now / 1000);
  const exp = iat + DEV_TOKEN_TTL_MS / 1000;
  const claims: Record<string, unknown> = { name };
  if (input.picture !== undefined) claims.picture = input.picture;
  if (input.roles !== undefined) claims.roles = [...input.roles];
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: keys.kid, typ: 'JWT' })
    .setIssuer(DEV_ISSUER)
    .setSubject(userId)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .sign(keys.privateKey);
  return { token, userId, expiresAt: exp * 1000 };
}
