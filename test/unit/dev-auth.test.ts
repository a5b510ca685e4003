import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt, decodeProtectedHeader, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSettings } from '../../src/config/settings.js';
import { ManualClock } from '../../src/domain/clock.js';
import {
  DEV_KEY_FILE,
  type DevKeys,
  devUserId,
  loadOrCreateDevKeys,
  mintDevToken,
} from '../../src/http/auth/dev-auth.js';
import { AuthError, createTokenVerifier } from '../../src/http/auth/verifier.js';

const T0 = Date.parse('2030-01-01T00:00:00Z');
let dir: string;
let keys: DevKeys;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'draw-chat-dev-auth-'));
  keys = await loadOrCreateDevKeys(join(dir, 'data'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function devVerifier(devKeys: DevKeys, clock = new ManualClock(T0)) {
  const settings = loadSettings({ DATABASE_URL: `sqlite:${join(dir, 'x.db')}` });
  expect(settings.devAuth).toBe(true);
  return createTokenVerifier(settings, { clock, devKeys });
}

describe('loadOrCreateDevKeys', () => {
  it('persists the key with mode 0600 and reuses it', async () => {
    const file = join(dir, 'data', DEV_KEY_FILE);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const again = await loadOrCreateDevKeys(join(dir, 'data'));
    expect(again.kid).toBe(keys.kid);
    expect(again.jwks).toEqual(keys.jwks);
    // A token minted with the first load verifies with the second (i.e. across a restart).
    const { token } = await mintDevToken(keys, { username: 'ada' }, T0);
    await expect(devVerifier(again).verify(token)).resolves.toMatchObject({ claimName: 'ada' });
  });

  it('publishes only the public key', () => {
    const [jwk] = keys.jwks.keys;
    expect(keys.jwks.keys).toHaveLength(1);
    expect(jwk).toMatchObject({ kty: 'RSA', kid: keys.kid, alg: 'RS256', use: 'sig' });
    for (const secret of ['d', 'p', 'q', 'dp', 'dq', 'qi']) expect(jwk).not.toHaveProperty(secret);
  });

  it('regenerates an unreadable key file', async () => {
    const other = join(dir, 'corrupt');
    const first = await loadOrCreateDevKeys(other);
    await writeFile(join(other, DEV_KEY_FILE), '{not json');
    const second = await loadOrCreateDevKeys(other);
    expect(second.kid).not.toBe(first.kid);
    expect(JSON.parse(await readFile(join(other, DEV_KEY_FILE), 'utf8')).kid).toBe(second.kid);
  });
});

describe('devUserId', () => {
  it('maps the same username to the same id, ignoring case and surrounding space', () => {
    expect(devUserId('Ada')).toBe(devUserId('ada'));
    expect(devUserId('  ADA ')).toBe(devUserId('ada'));
    expect(devUserId('Ada  Lovelace')).toBe(devUserId('ada lovelace'));
    // NFC: precomposed and combining forms are one name.
    expect(devUserId('Zo\u00e9')).toBe(devUserId('Zoe\u0301'));
    expect(devUserId('ada')).toMatch(/^dev_[0-9a-f]{16}$/);
  });

  it('gives different usernames different ids', () => {
    expect(devUserId('ada')).not.toBe(devUserId('grace'));
    expect(devUserId('ada')).not.toBe(devUserId('ada1'));
  });
});

describe('mintDevToken', () => {
  it('mints an RS256 token that the dev verifier accepts, with name, picture and roles', async () => {
    const minted = await mintDevToken(
      keys,
      { username: ' Ada ', picture: 'https://example.com/ada.png', roles: ['host'] },
      T0,
    );
    expect(minted.userId).toBe(devUserId('ada'));
    expect(minted.expiresAt).toBe(T0 + 24 * 3600_000);
    expect(decodeProtectedHeader(minted.token)).toMatchObject({ alg: 'RS256', kid: keys.kid });
    expect(decodeJwt(minted.token)).toMatchObject({
      iss: 'draw-chat-dev',
      sub: minted.userId,
      name: 'Ada',
      iat: T0 / 1000,
      exp: T0 / 1000 + 86400,
    });

    const verifier = devVerifier(keys);
    expect(verifier.mode).toBe('dev');
    await expect(verifier.verify(minted.token)).resolves.toEqual({
      userId: minted.userId,
      claimName: 'Ada',
      claimPicture: 'https://example.com/ada.png',
      fallbackName: minted.userId,
      isHost: true,
      expiresAt: minted.expiresAt,
    });
  });

  it('is not HOST without the role', async () => {
    const { token } = await mintDevToken(keys, { username: 'grace' }, T0);
    await expect(devVerifier(keys).verify(token)).resolves.toMatchObject({
      isHost: false,
      claimPicture: null,
    });
  });

  it('expires after 24 hours (plus the clock tolerance)', async () => {
    const clock = new ManualClock(T0);
    const verifier = devVerifier(keys, clock);
    const { token } = await mintDevToken(keys, { username: 'ada' }, T0);
    clock.set(T0 + 24 * 3600_000 + 4_000);
    await expect(verifier.verify(token)).resolves.toMatchObject({ claimName: 'ada' });
    clock.set(T0 + 24 * 3600_000 + 6_000);
    await expect(verifier.verify(token)).rejects.toBeInstanceOf(AuthError);
  });

  it('rejects an empty username', async () => {
    await expect(mintDevToken(keys, { username: '   ' }, T0)).rejects.toMatchObject({ code: 'bad_request' });
  });

  it('rejects a token signed by a different dev key', async () => {
    const otherKeys = await loadOrCreateDevKeys(join(dir, 'other'));
    const { token } = await mintDevToken(otherKeys, { username: 'ada' }, T0);
    await expect(devVerifier(keys).verify(token)).rejects.toBeInstanceOf(AuthError);
    // Same kid as ours but the wrong key: the signature check catches it.
    const forged = await mintDevToken({ ...otherKeys, kid: keys.kid }, { username: 'ada' }, T0);
    await expect(devVerifier(keys).verify(forged.token)).rejects.toMatchObject({ reason: 'bad signature' });
  });

  it('rejects a dev-key token with another issuer', async () => {
    const token = await new SignJWT({ name: 'x' })
      .setProtectedHeader({ alg: 'RS256', kid: keys.kid })
      .setIssuer('someone-else')
      .setSubject('U1')
      .setIssuedAt(T0 / 1000)
      .setExpirationTime(T0 / 1000 + 600)
      .sign(keys.privateKey);
    await expect(devVerifier(keys).verify(token)).rejects.toMatchObject({
      reason: expect.stringContaining('iss'),
    });
  });
});
