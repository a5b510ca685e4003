import { useCallback, useEffect, useMemo, useState } from 'react';
import type { ChatClient, ChatItem, ChatSnapshot } from '../../../src/client/index.js';
import { Announcer } from './Announcer.js';
import { Composer } from './Composer.js';
import { formatCountdown, formatFull, formatWhen } from './format.js';
import { Header } from './Header.js';
import { useChatSnapshot, useNow } from './hooks.js';
import { AlertIcon, ChatBubbleIcon, ClockIcon } from './icons.js';
import { MessageList } from './MessageList.js';
import { describeError, secondsToWait } from './MessageRow.js';

export interface LiveChatProps {
  client: ChatClient;
  /** Heading of the widget. Default "Live chat". */
  title?: string;
}

/**
 * The chat widget: header with live counts, the message list, and the input. Everything it shows comes from the
 * client's snapshot; it starts the client when mounted and stops it when unmounted.
 */
export function LiveChat({ client, title = 'Live chat' }: LiveChatProps) {
  const snap = useChatSnapshot(client);
  const [sentTick, setSentTick] = useState(0);
  const ticking =
    snap.state !== 'open' || snap.pending.some((p) => p.status === 'failed') || snap.error !== null;
  const now = useNow(1000, ticking);

  useEffect(() => {
    client.start();
    const online = () => client.reconnectNow();
    window.addEventListener('online', online);
    return () => {
      window.removeEventListener('online', online);
      client.stop();
    };
  }, [client]);

  // A refused heart or like is worth a moment's notice, not a permanent banner. While the chat is not open an
  // error stays: it may say why a join keeps failing (a refused sign-in, too many tabs).
  useEffect(() => {
    if (!snap.error || snap.state !== 'open') return;
    const wait = Math.max(4000, (snap.error.retry_after_ms ?? 0) + 500);
    const timer = window.setTimeout(() => client.clearError(), Math.min(wait, 15_000));
    return () => window.clearTimeout(timer);
  }, [snap.error, snap.state, client]);

  const onSend = useCallback(
    (text: string) => {
      void client.send(text);
      setSentTick((n) => n + 1);
    },
    [client],
  );
  const onToggleLike = useCallback(
    (item: ChatItem) => (item.liked_by_me ? client.unlikeMessage(item.id) : client.likeMessage(item.id)),
    [client],
  );
  const onRetry = useCallback((id: string) => void client.retry(id), [client]);
  const onDiscard = useCallback((id: string) => client.discard(id), [client]);
  const onLike = useCallback(() => client.like(), [client]);

  const serverNow = now + snap.clockOffsetMs;
  const readOnly = snap.state === 'closed' || snap.state === 'stopped' || snap.state === 'idle';
  const canSend = !readOnly && snap.you !== null;
  const rateLimited = useMemo(() => latestRateLimit(snap, now), [snap, now]);

  return (
    <section className="dc-chat" aria-label={title} data-state={snap.state}>
      <Header state={snap.state} viewers={snap.viewerCount} likes={snap.totalLikes} title={title} />
      <ConnectionBanner snap={snap} now={now} onRetryNow={() => client.reconnectNow()} />
      <MessageList
        snap={snap}
        now={now}
        sentTick={sentTick}
        onToggleLike={onToggleLike}
        onRetry={onRetry}
        onDiscard={onDiscard}
        empty={<EmptyState snap={snap} serverNow={serverNow} />}
      />
      <Announcer messages={snap.messages} youId={snap.you?.user_id} ready={snap.state === 'open'} />
      {readOnly ? (
        <ReadOnlyFooter snap={snap} serverNow={serverNow} />
      ) : (
        <Composer
          canSend={canSend}
          canLike={snap.state === 'open'}
          maxLength={snap.status?.settings.max_message_length ?? 500}
          onSend={onSend}
          onLike={onLike}
          notice={
            rateLimited ? (
              <p className="dc-notice dc-notice--error" role="alert">
                <AlertIcon />
                <span>
                  Slow down: you can send {snap.status?.settings.max_messages_per_minute ?? 'a few'} messages
                  a minute.{' '}
                  {rateLimited.wait > 0 ? `Try again in ${rateLimited.wait} s.` : 'You can send again now.'}
                </span>
              </p>
            ) : snap.error ? (
              <p className="dc-notice dc-notice--error" role="alert">
                <AlertIcon />
                <span>{capitalise(describeError(snap.error, now))}</span>
              </p>
            ) : null
          }
        />
      )}
    </section>
  );
}

/** The newest refused message that was refused for the rate limit, while it is still worth saying. */
function latestRateLimit(snap: ChatSnapshot, now: number): { wait: number } | null {
  const failed = snap.pending.filter((p) => p.status === 'failed' && p.error?.code === 'rate_limited').at(-1);
  if (!failed?.error) return null;
  const wait = secondsToWait(failed.error, now);
  return { wait };
}

function ConnectionBanner({
  snap,
  now,
  onRetryNow,
}: {
  snap: ChatSnapshot;
  now: number;
  onRetryNow: () => void;
}) {
  if (snap.state === 'reconnecting') {
    const inSeconds = snap.reconnectAt ? Math.ceil((snap.reconnectAt - now) / 1000) : 0;
    return (
      <div className="dc-banner dc-banner--warn" role="status">
        <span className="dc-spinner" aria-hidden="true" />
        <span>
          Reconnecting…
          {inSeconds > 1 ? ` next try in ${inSeconds} s` : ''}
        </span>
        {inSeconds > 1 && (
          <button type="button" className="dc-link" onClick={onRetryNow}>
            Try now
          </button>
        )}
      </div>
    );
  }
  if (snap.state === 'stopped' && snap.error) {
    return (
      <div className="dc-banner dc-banner--error" role="alert">
        <AlertIcon />
        <span>Can’t join the chat: {snap.error.message}</span>
      </div>
    );
  }
  return null;
}

/** What the list shows while it has no messages: loading, waiting for the window, or an invitation. */
function EmptyState({ snap, serverNow }: { snap: ChatSnapshot; serverNow: number }) {
  if (snap.state === 'connecting' || snap.state === 'idle') {
    return (
      <div className="dc-empty" role="status">
        <span className="dc-spinner" aria-hidden="true" />
        <p>Connecting to the chat…</p>
      </div>
    );
  }
  if (snap.state === 'closed') {
    return (
      <div className="dc-empty">
        <ClosedNotice snap={snap} serverNow={serverNow} large />
      </div>
    );
  }
  return (
    <div className="dc-empty">
      <ChatBubbleIcon className="dc-empty__icon" />
      <p className="dc-empty__title">Welcome to the chat!</p>
      <p>Say hi and wish everyone luck.</p>
    </div>
  );
}

/** "Chat opens at 8:00 PM" and a countdown, or "Chat closed" when no opening is known. */
function ClosedNotice({
  snap,
  serverNow,
  large = false,
}: {
  snap: ChatSnapshot;
  serverNow: number;
  large?: boolean;
}) {
  const closed = snap.closed;
  const opensAt = closed?.opensAt ? Date.parse(closed.opensAt) : Number.NaN;
  const upcoming = Number.isFinite(opensAt) && opensAt > serverNow;
  const ended = closed?.reason === 'window_ended';
  return (
    <div className={`dc-closed${large ? ' dc-closed--large' : ''}`}>
      <ClockIcon className="dc-closed__icon" />
      <div>
        <p className="dc-closed__title">
          {closed?.reason === 'disabled'
            ? 'Chat is turned off'
            : upcoming
              ? `Chat opens at ${formatWhen(opensAt, serverNow)}`
              : ended
                ? 'Chat closed'
                : 'Chat closed'}
        </p>
        {upcoming ? (
          <p className="dc-closed__sub">
            {ended ? 'This draw’s chat has ended. ' : ''}
            Opens in{' '}
            <span
              role="timer"
              aria-label="Time until the chat opens"
              className="dc-countdown"
              title={formatFull(opensAt)}
            >
              {formatCountdown(opensAt - serverNow)}
            </span>
          </p>
        ) : (
          <p className="dc-closed__sub">
            {ended
              ? 'This draw’s chat has ended. Messages stay readable here.'
              : 'Waiting for the next chat window.'}
          </p>
        )}
      </div>
    </div>
  );
}

function ReadOnlyFooter({ snap, serverNow }: { snap: ChatSnapshot; serverNow: number }) {
  if (snap.state === 'closed' && (snap.messages.length > 0 || snap.pending.length > 0)) {
    return (
      <div className="dc-readonly">
        <ClosedNotice snap={snap} serverNow={serverNow} />
      </div>
    );
  }
  return (
    <div className="dc-readonly dc-readonly--quiet">
      <p>
        {snap.state === 'closed' ? 'Messages can be sent while the chat is open.' : 'The chat is offline.'}
      </p>
    </div>
  );
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
