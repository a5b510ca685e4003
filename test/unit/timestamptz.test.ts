import { describe, expect, it } from 'vitest';
import { timestamptzText } from '../../src/store/database.js';

describe('timestamptz from PostgreSQL (src/store/database.ts)', () => {
  it("a UTC session's text becomes the wire's text, the fraction cut to milliseconds as a Date would", () => {
    expect(timestamptzText('2026-11-26 18:42:01.123456+00')).toBe('2026-11-26T18:42:01.123Z');
    expect(timestamptzText('2026-11-26 18:42:01.999999+00')).toBe('2026-11-26T18:42:01.999Z');
    expect(timestamptzText('2026-11-26 18:42:01.12+00')).toBe('2026-11-26T18:42:01.120Z');
    expect(timestamptzText('2026-11-26 18:42:01.5+00')).toBe('2026-11-26T18:42:01.500Z');
    expect(timestamptzText('2026-11-26 18:42:01+00')).toBe('2026-11-26T18:42:01.000Z');
    // The same instant as the Date the default parser makes.
    const text = timestamptzText('2030-05-06 07:08:09.123+00') as string;
    expect(new Date(text).toISOString()).toBe(text);
  });

  it('any other text goes to the default parser (a Date of the same instant)', () => {
    const other = timestamptzText('2026-11-26 19:42:01.123+01');
    expect(other).toBeInstanceOf(Date);
    expect((other as Date).toISOString()).toBe('2026-11-26T18:42:01.123Z');
    expect(timestamptzText('2026-11-26 13:12:01+05:30')).toEqual(new Date('2026-11-26T07:42:01.000Z'));
  });
});
