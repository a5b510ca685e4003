import { describe, expect, it } from 'vitest';
import { codePointLength, MAX_COMBINING_MARKS, normalizeMessageText } from '../../src/domain/message-text.js';
import { ChatError } from '../../src/protocol/errors.js';

const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return err instanceof ChatError ? err.code : `not a ChatError: ${err}`;
  }
  return 'accepted';
};

describe('message text [SPEC §4]', () => {
  it('trims, keeps inner line breaks, turns CRLF into LF', () => {
    expect(normalizeMessageText('  hi\r\nthere  ', 500)).toBe('hi\nthere');
  });

  it('refuses empty, whitespace-only and invisible-only text', () => {
    for (const t of ['', '   ', '\n\n', '\u200b\u200b', '\u202e', '\u0301']) {
      expect(
        code(() => normalizeMessageText(t, 500)),
        JSON.stringify(t),
      ).toBe('invalid_message');
    }
  });

  it('refuses control characters other than line breaks, NUL included', () => {
    for (const t of ['a\u0000b', 'a\u0007', '\u001b[31mred', 'tab\there', 'del\u007f', 'c1\u0085']) {
      expect(
        code(() => normalizeMessageText(t, 500)),
        JSON.stringify(t),
      ).toBe('invalid_message');
    }
  });

  it('counts code points: 500 emoji fit in 500, 501 do not', () => {
    expect(codePointLength('😀'.repeat(3))).toBe(3);
    expect(code(() => normalizeMessageText('😀'.repeat(500), 500))).toBe('accepted');
    expect(code(() => normalizeMessageText('😀'.repeat(501), 500))).toBe('message_too_long');
    // A ZWJ family is several code points: they count.
    expect(codePointLength('👨‍👩‍👧')).toBe(5);
  });

  it('refuses lone surrogates, keeps pairs', () => {
    expect(code(() => normalizeMessageText('bad \ud800 half', 500))).toBe('invalid_message');
    expect(normalizeMessageText('ok 😀', 500)).toBe('ok 😀');
  });

  it(`caps combining marks at ${MAX_COMBINING_MARKS} per character (zalgo)`, () => {
    const marks = (n: number) => `Z${'\u0301'.repeat(n)}`;
    expect(code(() => normalizeMessageText(marks(MAX_COMBINING_MARKS), 500))).toBe('accepted');
    expect(code(() => normalizeMessageText(marks(MAX_COMBINING_MARKS + 1), 500))).toBe('invalid_message');
  });

  it('shrinks newline floods to one blank line', () => {
    expect(normalizeMessageText('a\n\n\n\n\n\nb', 500)).toBe('a\n\nb');
    expect(normalizeMessageText('a\n \n  \n\nb', 500)).toBe('a\n\nb');
    expect(normalizeMessageText('a\n\nb', 500)).toBe('a\n\nb');
  });

  it('takes the Unicode line and paragraph separators (U+2028, U+2029) as line breaks: a flood of them shrinks too', () => {
    expect(normalizeMessageText(`top${'\u2028'.repeat(400)}bottom`, 500)).toBe('top\n\nbottom');
    expect(normalizeMessageText('a\u2029\u2029\u2029b', 500)).toBe('a\n\nb');
    expect(normalizeMessageText('one\u2028two', 500)).toBe('one\ntwo');
    expect(normalizeMessageText('\u2028\u2029hi\u2028', 500)).toBe('hi');
  });

  it('keeps right-to-left text, emoji and zero-width joiners inside real text verbatim', () => {
    for (const t of [
      'שלום עולם',
      'مرحبا',
      'family 👨‍👩‍👧',
      "'; DROP TABLE x; --",
      '<img src=x onerror=alert(1)>',
    ]) {
      expect(normalizeMessageText(t, 500)).toBe(t);
    }
  });
});
