import type { JWTPayload } from 'jose';
import { describe, expect, it } from 'vitest';
import { AuthError, identityFromClaims } from '../../src/http/auth/identity.js';

const EXP = 2_000_000_000;
const base = (extra: Record<string, unknown> = {}): JWTPayload => ({ sub: 'U123', exp: EXP, ...extra });
const id = (extra: Record<string, unknown> = {}, hostRole = 'host') =>
  identityFromClaims(base(extra), hostRole);

describe('identityFromClaims', () => {
  it('maps sub and exp', () => {
    const identity = id();
    expect(identity).toEqual({
      userId: 'U123',
      claimName: null,
      claimPicture: null,
      fallbackName: 'U123',
      isHost: false,
      expiresAt: EXP * 1000,
    });
  });

  it('takes the name from name, else nickname, trimmed', () => {
    expect(id({ name: '  Ada  ', nickname: 'ada99' }).claimName).toBe('Ada');
    expect(id({ name: '   ', nickname: ' ada99 ' }).claimName).toBe('ada99');
    expect(id({ name: 42, nickname: 'ada99' }).claimName).toBe('ada99');
    expect(id({ name: '', nickname: '' }).claimName).toBeNull();
    expect(id({ name: ['Ada'] }).claimName).toBeNull();
  });

  it('takes a name with nothing visible in it (zero-width, format characters, spaces) as no name', () => {
    expect(id({ name: '\u200b', nickname: 'ada99' }).claimName).toBe('ada99');
    expect(id({ name: '\u202e\u200d ', nickname: '\u2060' }).claimName).toBeNull();
    expect(id({ email: '\u200b@example.com' }).fallbackName).toBe('U123');
    // Visible text with such characters inside is kept as sent (the widget isolates names' direction).
    expect(id({ name: 'Ada\u200dLovelace' }).claimName).toBe('Ada\u200dLovelace');
  });

  it('replaces a lone surrogate in a name with U+FFFD, as both databases would store it alike', () => {
    expect(id({ name: 'n\udc00m' }).claimName).toBe('n\ufffdm');
    expect(id({ name: 'ok 😀' }).claimName).toBe('ok 😀');
  });

  it('turns control characters into spaces and caps the name at 100 code points', () => {
    expect(id({ name: 'Ada\nLovelace\u0000' }).claimName).toBe('Ada Lovelace');
    const long = '😀'.repeat(150);
    const capped = id({ name: long }).claimName!;
    expect([...capped]).toHaveLength(100);
    expect(capped).toBe('😀'.repeat(100));
  });

  it('falls back to the email local part, else sub', () => {
    expect(id({ email: 'ada@example.com' }).fallbackName).toBe('ada');
    expect(id({ email: '@example.com' }).fallbackName).toBe('U123');
    expect(id({ email: 'no-at-sign' }).fallbackName).toBe('U123');
    expect(id({ email: 17 }).fallbackName).toBe('U123');
    // The name claims win for display, but the fallback is still computed.
    const both = id({ name: 'Ada', email: 'ada.l@example.com' });
    expect(both.claimName).toBe('Ada');
    expect(both.fallbackName).toBe('ada.l');
  });

  it('accepts only http(s) picture URLs up to 2048 characters', () => {
    expect(id({ picture: 'https://cdn.example.com/a.png' }).claimPicture).toBe(
      'https://cdn.example.com/a.png',
    );
    expect(id({ picture: 'http://cdn.example.com/a.png' }).claimPicture).toBe('http://cdn.example.com/a.png');
    expect(id({ picture: 'javascript:alert(1)' }).claimPicture).toBeNull();
    expect(id({ picture: 'data:image/png;base64,AAAA' }).claimPicture).toBeNull();
    expect(id({ picture: 'not a url' }).claimPicture).toBeNull();
    expect(id({ picture: 'https://user:pw@cdn.example.com/a.png' }).claimPicture).toBeNull();
    expect(id({ picture: `https://cdn.example.com/${'a'.repeat(2048)}` }).claimPicture).toBeNull();
    expect(id({ picture: { url: 'https://cdn.example.com/a.png' } }).claimPicture).toBeNull();
  });

  it('is HOST via roles or any tenants.*.roles', () => {
    expect(id({ roles: ['viewer', 'host'] }).isHost).toBe(true);
    expect(id({ roles: ['viewer'] }).isHost).toBe(false);
    expect(id({ roles: 'host' }).isHost).toBe(false);
    expect(id({ tenants: { T1: { roles: ['viewer'] }, T2: { roles: ['host'] } } }).isHost).toBe(true);
    expect(id({ tenants: { T1: { roles: ['viewer'] } } }).isHost).toBe(false);
    expect(id({ tenants: [{ roles: ['host'] }] }).isHost).toBe(false);
    expect(id({ tenants: { T1: null, T2: 'host', T3: { roles: 'host' } } }).isHost).toBe(false);
  });

  it('honours a custom host role', () => {
    expect(id({ roles: ['moderator'] }, 'moderator').isHost).toBe(true);
    expect(id({ roles: ['host'] }, 'moderator').isHost).toBe(false);
    expect(id({ tenants: { T: { roles: ['moderator'] } } }, 'moderator').isHost).toBe(true);
  });

  it('never reads nsec', () => {
    const identity = id({ nsec: { roles: ['host'], name: 'x', picture: 'https://evil.example/x.png' } });
    expect(identity.isHost).toBe(false);
    expect(identity.claimName).toBeNull();
    expect(identity.claimPicture).toBeNull();
    const tenantsInNsec = id({ nsec: { tenants: { T: { roles: ['host'] } } } });
    expect(tenantsInNsec.isHost).toBe(false);
  });

  it('is unharmed by prototype-pollution-shaped claims', () => {
    // JSON.parse makes "__proto__" an own property, exactly as a decoded token would.
    const parsed = JSON.parse(
      '{"sub":"U1","exp":2000000000,"tenants":{"__proto__":{"roles":["host"]},"constructor":{"roles":["host"]}}}',
    ) as JWTPayload;
    expect(identityFromClaims(parsed, 'host').isHost).toBe(false);
    expect(({} as Record<string, unknown>).roles).toBeUndefined();

    // An inherited property must not count either.
    const inherited = Object.create({ roles: ['host'], name: 'Inherited' }) as Record<string, unknown>;
    inherited.sub = 'U1';
    inherited.exp = EXP;
    expect(identityFromClaims(inherited as JWTPayload, 'host')).toMatchObject({
      isHost: false,
      claimName: null,
    });

    const tenantsWithProto = { sub: 'U1', exp: EXP, tenants: { __proto__: { T: { roles: ['host'] } } } };
    expect(identityFromClaims(tenantsWithProto as JWTPayload, 'host').isHost).toBe(false);
    expect(identityFromClaims(base({ roles: ['__proto__'] }), '__proto__').isHost).toBe(true);
  });

  it('rejects a missing, empty, overlong, control-character or not well-formed (lone surrogate) sub', () => {
    for (const sub of [undefined, '', 42, 'x'.repeat(257), 'a\nb', ['U1'], 'lone\ud800sub', '\udc00']) {
      expect(() => identityFromClaims({ sub, exp: EXP } as JWTPayload, 'host')).toThrow(AuthError);
    }
    expect(identityFromClaims({ sub: 'x'.repeat(256), exp: EXP }, 'host').userId).toHaveLength(256);
  });

  it('rejects a missing exp', () => {
    expect(() => identityFromClaims({ sub: 'U1' }, 'host')).toThrow(AuthError);
  });
});
