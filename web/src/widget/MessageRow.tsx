import { memo } from 'react';
import type { ChatItem, PendingMessage, You } from '../../../src/client/index.js';
import { Avatar } from './Avatar.js';
import { Badges } from './Badges.js';
import { formatFull, formatTime, nameColour } from './format.js';
import { AlertIcon, ClockIcon, HeartIcon } from './icons.js';

interface StoredProps {
  item: ChatItem;
  mine: boolean;
  canLike: boolean;
  /** Whether this row's like button is the list's one Tab stop (the others are reached with the arrow keys). */
  tabStop: boolean;
  onToggleLike: (item: ChatItem) => void;
}

/** One stored message. The text is rendered as text (React escapes it): markup in a message stays characters. */
export const MessageRow = memo(function MessageRow({
  item,
  mine,
  canLike,
  tabStop,
  onToggleLike,
}: StoredProps) {
  return (
    <li
      className={`dc-msg${mine ? ' dc-msg--mine' : ''}${item.is_host ? ' dc-msg--host' : ''}`}
      data-id={item.id}
    >
      <Avatar userId={item.user_id} name={item.username} src={item.profile_pic} />
      <div className="dc-msg__body">
        <div className="dc-msg__meta">
          <span className="dc-msg__name" dir="auto" style={{ color: nameColour(item.user_id) }}>
            {item.username}
          </span>
          <Badges winner={item.is_winner} host={item.is_host} />
          <time className="dc-msg__time" dateTime={item.created_at} title={formatFull(item.created_at)}>
            {formatTime(item.created_at)}
          </time>
        </div>
        <p className="dc-msg__text" dir="auto">
          {item.message}
        </p>
      </div>
      <button
        type="button"
        className={`dc-like${item.liked_by_me ? ' dc-like--on' : ''}${item.likes === 0 ? ' dc-like--zero' : ''}`}
        aria-label="Like message"
        aria-pressed={item.liked_by_me}
        title={item.liked_by_me ? 'Unlike' : 'Like'}
        disabled={!canLike}
        tabIndex={tabStop ? 0 : -1}
        onClick={() => onToggleLike(item)}
      >
        <HeartIcon filled={item.liked_by_me} />
        {/* The count, a plain number, is the button's text (0 too); a zero is hidden from sight only. */}
        <span className={item.likes === 0 ? 'dc-sr-only' : 'dc-like__count'}>{item.likes}</span>
      </button>
    </li>
  );
});

interface PendingProps {
  pending: PendingMessage;
  you: You;
  now: number;
  onRetry: (clientMsgId: string) => void;
  onDiscard: (clientMsgId: string) => void;
}

/** An own message on its way (dimmed, "Sending…"), or refused (why, and Retry). */
export function PendingRow({ pending, you, now, onRetry, onDiscard }: PendingProps) {
  const failed = pending.status === 'failed';
  return (
    <li className={`dc-msg dc-msg--mine ${failed ? 'dc-msg--failed' : 'dc-msg--pending'}`}>
      <Avatar userId={you.user_id} name={you.username} src={you.profile_pic} />
      <div className="dc-msg__body">
        <div className="dc-msg__meta">
          <span className="dc-msg__name" dir="auto" style={{ color: nameColour(you.user_id) }}>
            {you.username}
          </span>
          <Badges winner={you.is_winner} host={you.is_host} />
          {!failed && (
            <span className="dc-msg__time">
              <ClockIcon /> Sending…
            </span>
          )}
        </div>
        <p className="dc-msg__text" dir="auto">
          {pending.message}
        </p>
        {failed && pending.error && (
          <p className="dc-msg__error">
            <AlertIcon />
            <span>Not sent: {describeError(pending.error, now)}</span>
            <button type="button" className="dc-link" onClick={() => onRetry(pending.client_msg_id)}>
              Retry
            </button>
            <button type="button" className="dc-link" onClick={() => onDiscard(pending.client_msg_id)}>
              Discard
            </button>
          </p>
        )}
      </div>
    </li>
  );
}

/** Seconds left before a refused action may be retried, or 0. */
export function secondsToWait(error: { retry_after_ms?: number; at: number }, now: number): number {
  if (error.retry_after_ms === undefined) return 0;
  return Math.max(0, Math.ceil((error.at + error.retry_after_ms - now) / 1000));
}

/** A refusal in words a viewer understands. */
export function describeError(
  error: { code: string; message: string; retry_after_ms?: number; at: number },
  now: number,
) {
  const wait = secondsToWait(error, now);
  switch (error.code) {
    case 'rate_limited':
      return wait > 0
        ? `you're sending too fast. Try again in ${wait} s.`
        : `you're sending too fast. Try again now.`;
    case 'message_too_long':
      return 'the message is too long.';
    case 'invalid_message':
      return 'the message is empty or has characters that are not allowed.';
    case 'chat_closed':
      return 'the chat is closed.';
    default:
      return error.message;
  }
}
