import { describe, expect, it } from 'vitest';
import { addressKey } from '../../src/http/ws.js';

// The key of the per-address handshake cap. With TRUST_PROXY the address comes from X-Forwarded-For, which a
// client may fill with anything: the key must never throw (it was a 500 and an error log per request).
describe('addressKey', () => {
  it('keys IPv4 by the address, IPv6 by its /64, IPv4-mapped IPv6 as IPv4', () => {
    expect(addressKey('203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('2001:db8:0:1:2:3:4:5')).toBe('2001:db8:0:1::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('2001:0db8:0000:0001::1')).toBe('2001:db8:0:1::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
  });

  it('takes what is not an IP address as it is, without throwing', () => {
    for (const junk of ['1:2:3:4:5::6:7:8:9', '[::1]', 'garbage', '1::2::3', ':::', 'a:b:c:d:e:f:g:h:i']) {
      expect(() => addressKey(junk), junk).not.toThrow();
      expect(addressKey(junk), junk).toBe(junk);
    }
  });
});
