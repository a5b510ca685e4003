import { ChatError } from '../protocol/errors.js';

// C0/C1 controls and DEL, except the line breaks \n and \r (SPEC §4). NUL is refused here, before any store,
// so SQLite and PostgreSQL (which cannot hold NUL in text) behave the same.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const FORBIDDEN_CONTROL = /[\u0000-\u0009\u000b\u000c\u000e-\u001f\u007f-\u009f]/u;

/** Number of Unicode code points (what users call characters; an emoji is one, not two UTF-16 units). */
export function codePointLength(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/**
 * Validates and normalises a chat message: line breaks become `\n`, surrounding whitespace is trimmed.
 * Throws `ChatError` with `invalid_message` or `message_too_long`.
 */
export function normalizeMessageText(raw: string, maxLength: number): string {
  if (FORBIDDEN_CONTROL.test(raw)) {
    throw new ChatError('invalid_message', 'Messages cannot contain control characters.');
  }
  const text = raw.replace(/\r\n?/g, '\n').trim();
  if (text === '') throw new ChatError('invalid_message', 'The message is empty.');
  if (text.length > maxLength && codePointLength(text) > maxLength) {
    throw new ChatError('message_too_long', `Messages can be at most ${maxLength} characters long.`);
  }
  return text;
}
