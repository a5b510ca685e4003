import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importJWK, type JWK, SignJWT } from 'jose';
import { devUserId, loadOrCreateDevKeys, mintDevToken } from '../../src/http/auth/dev-auth.js';

/**
 * Tokens for simulated viewers, signed with a dev-auth key (RS256, the same key a dev-mode draw-chat server
 * uses when it shares `DATA_DIR`). Minting costs about half a millisecond each, so they are cached on disk per
 * key and reused while they have at least an hour left. Alternatively `--key <private JWK file>` signs with a
 * key of your own (with `--issuer`), for a server that trusts it through `AUTH_JWKS_URL`.
 */
export const DEFAULT_KEYS_DIR = join(tmpdir(), 'drawchat-bench-keys');
/** Tokens minted at once (`TokenMint.tokens`). */
const MINT_CONCURRENCY = 32;

type Sign = (username: string, now: number) => Promise<{ token: string; expiresAt: number }>;

interface TokenCache {
  kid: string;
  tokens: Record<string, { token: string; exp: number }>;
}

export class TokenMint {
  readonly #cacheFile: string;
  #cache: TokenCache;
  #dirty = false;

  private constructor(
    readonly kid: string,
    readonly dir: string,
    private readonly sign: Sign,
  ) {
    this.#cacheFile = join(dir, `bench-tokens-${kid.replace(/[^A-Za-z0-9_-]/g, '_')}.json`);
    let cache: TokenCache = { kid, tokens: {} };
    if (existsSync(this.#cacheFile)) {
      try {
        const parsed = JSON.parse(readFileSync(this.#cacheFile, 'utf8')) as TokenCache;
        if (parsed.kid === kid) cache = parsed;
      } catch {
        // A broken cache only costs minting again.
      }
    }
    this.#cache = cache;
  }

  /** The dev key in `dir` (created when missing); a draw-chat server with `DATA_DIR=dir` trusts its tokens. */
  static async open(dir = DEFAULT_KEYS_DIR): Promise<TokenMint> {
    mkdirSync(dir, { recursive: true });
    const keys = await loadOrCreateDevKeys(dir);
    writeFileSync(join(dir, 'jwks.json'), JSON.stringify(keys.jwks));
    return new TokenMint(keys.kid, dir, async (username, now) => mintDevToken(keys, { username }, now));
  }

  /**
   * Tokens signed with a private RSA JWK of your own (`kid` in the file), for a server that verifies them
   * through `AUTH_JWKS_URL`; `sub` is the dev-style id of the username, `name` the username.
   */
  static async fromKeyFile(
    file: string,
    claims: { issuer?: string; audience?: string; ttlS?: number },
    dir = DEFAULT_KEYS_DIR,
  ): Promise<TokenMint> {
    mkdirSync(dir, { recursive: true });
    const jwk = JSON.parse(readFileSync(file, 'utf8')) as JWK;
    const key = await importJWK({ ...jwk, alg: 'RS256' }, 'RS256');
    const kid = jwk.kid ?? 'bench-key';
    const ttl = claims.ttlS ?? 24 * 3600;
    return new TokenMint(
      `${kid}-${claims.issuer ?? ''}-${claims.audience ?? ''}`,
      dir,
      async (username, now) => {
        const iat = Math.floor(now / 1000);
        const jwt = new SignJWT({ name: username })
          .setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' })
          .setSubject(devUserId(username))
          .setIssuedAt(iat)
          .setExpirationTime(iat + ttl);
        if (claims.issuer) jwt.setIssuer(claims.issuer);
        if (claims.audience) jwt.setAudience(claims.audience);
        return { token: await jwt.sign(key), expiresAt: (iat + ttl) * 1000 };
      },
    );
  }

  /**
   * Tokens from a running dev-auth server's `POST /live-chat/dev/token` (`kid`: its dev key's, from its JWKS, so
   * that tokens cached for a server since restarted with another key are not reused).
   */
  static fromServer(url: string, kid: string, dir = DEFAULT_KEYS_DIR): TokenMint {
    mkdirSync(dir, { recursive: true });
    return new TokenMint(`server-${kid}`, dir, async (username) => {
      const res = await fetch(`${url}/live-chat/dev/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username }),
      });
      const body = (await res.json().catch(() => null)) as { token?: string; expires_at?: string } | null;
      if (!res.ok || !body?.token || !body.expires_at)
        throw new Error(`POST ${url}/live-chat/dev/token answered ${res.status}`);
      return { token: body.token, expiresAt: Date.parse(body.expires_at) };
    });
  }

  /** Where the public keys are (for the `ws` baseline's RS256 check). */
  get jwksFile(): string {
    return join(this.dir, 'jwks.json');
  }

  /**
   * Tokens for `bench-<from>` … `bench-<to-1>`, minted where the cache has none valid for another hour, up to
   * `MINT_CONCURRENCY` at a time (a remote server's dev endpoint is a round trip each).
   */
  async tokens(from: number, to: number, onProgress?: (done: number) => void): Promise<string[]> {
    const out: string[] = [];
    const now = Date.now();
    const missing: number[] = [];
    for (let i = from; i < to; i++) {
      const hit = this.#cache.tokens[`bench-${i}`];
      if (hit && hit.exp - now > 3_600_000) out[i - from] = hit.token;
      else missing.push(i);
    }
    let next = 0;
    let done = 0;
    const mintSome = async () => {
      while (next < missing.length) {
        const i = missing[next++]!;
        const name = `bench-${i}`;
        const minted = await this.sign(name, now);
        this.#cache.tokens[name] = { token: minted.token, exp: minted.expiresAt };
        this.#dirty = true;
        out[i - from] = minted.token;
        if (onProgress && ++done % 1000 === 0) onProgress(done);
      }
    };
    await Promise.all(Array.from({ length: Math.min(MINT_CONCURRENCY, missing.length) }, mintSome));
    this.save();
    return out;
  }

  save(): void {
    if (!this.#dirty) return;
    const tmp = `${this.#cacheFile}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.#cache));
    renameSync(tmp, this.#cacheFile);
    this.#dirty = false;
  }
}

/**
 * Who a token names, for the baselines, which check no token in the fan-out: `user` (the token's `sub`) and
 * `name` (its `name`, else the `sub`; `fallback` for both without a token), given as `?user=&name=` on their
 * handshake, so that their messages carry the same `user_id` and `username` as draw-chat's for the same viewer,
 * and so the same bytes per delivery.
 */
export function baselineIdentity(
  token: string | undefined,
  fallback: string,
): { user: string; name: string } {
  let claims: { sub?: unknown; name?: unknown } = {};
  try {
    claims = JSON.parse(Buffer.from(token?.split('.')[1] ?? '', 'base64url').toString()) as typeof claims;
  } catch {
    // Not a JWT: no identity to copy.
  }
  const user = typeof claims.sub === 'string' ? claims.sub : fallback;
  return { user, name: typeof claims.name === 'string' ? claims.name : user };
}
