import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose';

export interface SignOptions {
  /** `exp` in Unix seconds; default one hour from now. */
  exp?: number;
  /** `iss`; default the issuer's own; `null` leaves it out. */
  issuer?: string | null;
  /** `aud`; default the issuer's own; `null` leaves it out. */
  audience?: string | null;
  /** Header `kid`; default the served key's. */
  kid?: string;
  /** Signing key; default the served key's private half. */
  privateKey?: CryptoKey;
}

/**
 * A token issuer for tests: an RS256 key pair whose public half is served as a JWKS on 127.0.0.1 (real HTTP),
 * and `sign()` to mint tokens with it. `env()` is what a draw-chat server needs to trust it.
 */
export interface TestIssuer {
  readonly jwksUrl: string;
  readonly issuer: string;
  readonly audience: string;
  readonly kid: string;
  readonly publicKey: CryptoKey;
  readonly privateKey: CryptoKey;
  /** Paths of the JWKS requests received so far. */
  readonly requests: string[];
  env(): Record<string, string>;
  sign(claims: JWTPayload, options?: SignOptions): Promise<string>;
  close(): Promise<void>;
}

export async function startIssuer(
  options: { issuer?: string; audience?: string; kid?: string } = {},
): Promise<TestIssuer> {
  const issuer = options.issuer ?? 'https://issuer.test';
  const audience = options.audience ?? 'draw-chat';
  const kid = options.kid ?? 'test-key-1';
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    requests.push(req.url ?? '');
    if (req.url !== '/jwks') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [publicJwk] }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const jwksUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;

  return {
    jwksUrl,
    issuer,
    audience,
    kid,
    publicKey,
    privateKey,
    requests,
    env: () => ({ AUTH_JWKS_URL: jwksUrl, AUTH_ISSUER: issuer, AUTH_AUDIENCE: audience }),
    async sign(claims, opts = {}) {
      const now = Math.floor(Date.now() / 1000);
      const jwt = new SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', kid: opts.kid ?? kid, typ: 'JWT' })
        .setIssuedAt(Math.min(now, opts.exp ?? now))
        .setExpirationTime(opts.exp ?? now + 3600);
      const iss = opts.issuer === undefined ? issuer : opts.issuer;
      const aud = opts.audience === undefined ? audience : opts.audience;
      if (iss !== null) jwt.setIssuer(iss);
      if (aud !== null) jwt.setAudience(aud);
      return jwt.sign(opts.privateKey ?? privateKey);
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
