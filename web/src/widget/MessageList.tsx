import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'react';
import type { ChatItem, ChatSnapshot } from '../../../src/client/index.js';
import { ArrowDownIcon } from './icons.js';
import { MessageRow, PendingRow } from './MessageRow.js';

/** How close to the bottom (px) still counts as "at the bottom". */
const STICKY_PX = 48;

interface Props {
  snap: ChatSnapshot;
  now: number;
  empty: React.ReactNode;
  onToggleLike: (item: ChatItem) => void;
  onRetry: (clientMsgId: string) => void;
  onDiscard: (clientMsgId: string) => void;
  /** Bumped when the viewer sends: always scroll down to their own message. */
  sentTick: number;
}

/**
 * The message list. It sticks to the bottom as messages arrive, unless the viewer scrolled up to read; then a
 * "new messages" pill counts what arrived below and brings them back down.
 */
export function MessageList({ snap, now, empty, onToggleLike, onRetry, onDiscard, sentTick }: Props) {
  const scroller = useRef<HTMLElement>(null);
  const atBottom = useRef(true);
  /**
   * `scrollTop` when the list was last at the bottom. The scroll event comes a frame after the viewer scrolls, so
   * a message arriving in between would find `atBottom` still set and pull the viewer back down: a `scrollTop`
   * above this says they left the bottom even before the event does.
   */
  const bottomTop = useRef(0);
  const [unseen, setUnseen] = useState(0);
  /**
   * The message whose like button is the list's one Tab stop (a roving tabindex): the one last focused while it
   * is in the list, else the newest. With a button per message as a Tab stop, a keyboard user pressed Tab once per
   * message (hundreds) to get from the history to the input; the arrow keys move between the messages instead.
   */
  const [focusedId, setFocusedId] = useState<number | null>(null);
  const lastId = useRef(0);
  const messages = snap.messages;
  const canLike = snap.state === 'open';
  const you = snap.you;

  const scrollToBottom = useCallback((smooth: boolean) => {
    const el = scroller.current;
    if (!el) return;
    el.scrollTo({ top: el.scrollHeight, behavior: smooth ? 'smooth' : 'auto' });
    atBottom.current = true;
    bottomTop.current = smooth ? 0 : el.scrollTop;
    setUnseen(0);
  }, []);

  const onScroll = useCallback(() => {
    const el = scroller.current;
    if (!el) return;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight <= STICKY_PX;
    if (atBottom.current) {
      bottomTop.current = el.scrollTop;
      setUnseen(0);
    }
  }, []);

  /** Keeps the bottom in view if the viewer is there (see `bottomTop`); says whether they are. */
  const stick = useCallback((): boolean => {
    const el = scroller.current;
    if (!el) return atBottom.current;
    // Above where the bottom was, and not because the list got shorter or taller (then the browser moved
    // scrollTop to the new end itself).
    const maxTop = el.scrollHeight - el.clientHeight;
    if (atBottom.current && el.scrollTop < bottomTop.current - STICKY_PX && el.scrollTop < maxTop - STICKY_PX)
      atBottom.current = false;
    if (atBottom.current) {
      el.scrollTop = el.scrollHeight;
      bottomTop.current = el.scrollTop;
    }
    return atBottom.current;
  }, []);

  // Before paint: keep the bottom in view, or count what arrived while the viewer reads further up.
  // biome-ignore lint/correctness/useExhaustiveDependencies: a new pending message also has to stay in view
  useLayoutEffect(() => {
    const newest = messages.at(-1)?.id ?? 0;
    const arrived = lastId.current === 0 ? 0 : messages.filter((m) => m.id > lastId.current).length;
    lastId.current = Math.max(lastId.current, newest);
    if (!stick() && arrived > 0) {
      setUnseen((n) => n + arrived);
    }
  }, [messages, snap.pending]);

  useLayoutEffect(() => {
    if (sentTick > 0) scrollToBottom(false);
  }, [sentTick, scrollToBottom]);

  // The list area changes size (mobile keyboard, banners): stay at the bottom if we were there.
  useEffect(() => {
    const el = scroller.current;
    if (!el || typeof ResizeObserver === 'undefined') return;
    const observer = new ResizeObserver(() => stick());
    observer.observe(el);
    return () => observer.disconnect();
  }, [stick]);

  const tabStopId =
    focusedId !== null && messages.some((m) => m.id === focusedId)
      ? focusedId
      : (messages.at(-1)?.id ?? null);

  /** Arrow keys, Home and End move between the messages' like buttons. */
  const onListKeyDown = useCallback((e: React.KeyboardEvent<HTMLUListElement>) => {
    const from = (e.target as HTMLElement).closest<HTMLElement>('li[data-id]');
    if (!from || !(e.target as HTMLElement).matches('button.dc-like')) return;
    const rows = [...e.currentTarget.querySelectorAll<HTMLElement>('li[data-id]')];
    const at = rows.indexOf(from);
    const to =
      e.key === 'ArrowUp'
        ? rows[at - 1]
        : e.key === 'ArrowDown'
          ? rows[at + 1]
          : e.key === 'Home'
            ? rows[0]
            : e.key === 'End'
              ? rows.at(-1)
              : undefined;
    if (!to) return;
    e.preventDefault();
    to.querySelector<HTMLElement>('button.dc-like')?.focus();
  }, []);
  const onListFocus = useCallback((e: React.FocusEvent<HTMLUListElement>) => {
    const row = (e.target as HTMLElement).closest<HTMLElement>('li[data-id]');
    if (row && (e.target as HTMLElement).matches('button.dc-like')) setFocusedId(Number(row.dataset.id));
  }, []);

  const nothing = messages.length === 0 && snap.pending.length === 0;
  return (
    <div className="dc-list-wrap">
      <section
        className="dc-scroll"
        ref={scroller}
        onScroll={onScroll}
        // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrollable region must be reachable by keyboard (WCAG 2.1.1)
        tabIndex={0}
        aria-label="Message history"
      >
        {nothing && empty}
        <ul
          className="dc-list"
          // biome-ignore lint/a11y/noRedundantRoles: role="list" again: Safari drops list semantics from lists without bullets
          role="list"
          aria-label="Chat messages"
          onKeyDown={onListKeyDown}
          onFocus={onListFocus}
        >
          {messages.map((item) => (
            <MessageRow
              key={item.id}
              item={item}
              mine={item.user_id === you?.user_id}
              canLike={canLike}
              tabStop={item.id === tabStopId}
              onToggleLike={onToggleLike}
            />
          ))}
          {you &&
            snap.pending.map((p) => (
              <PendingRow
                key={p.client_msg_id}
                pending={p}
                you={you}
                now={now}
                onRetry={onRetry}
                onDiscard={onDiscard}
              />
            ))}
        </ul>
      </section>
      {unseen > 0 && (
        <button type="button" className="dc-pill" onClick={() => scrollToBottom(true)}>
          <ArrowDownIcon />
          {unseen === 1 ? '1 new message' : `${unseen} new messages`}
        </button>
      )}
    </div>
  );
}
