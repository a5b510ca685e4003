import { useEffect, useRef, useState } from 'react';
import type { ChatItem } from '../../../src/client/index.js';

/** Announce at most this often, so a busy chat does not drown a screen reader. */
const MIN_GAP_MS = 2500;

/**
 * A polite live region that reads out new messages from others ("alice: good luck"). Bursts are summed up:
 * "5 new messages. Latest from bob: here we go".
 */
export function Announcer({
  messages,
  youId,
  ready,
}: {
  messages: readonly ChatItem[];
  youId: string | undefined;
  ready: boolean;
}) {
  const [text, setText] = useState('');
  const seen = useRef<number | null>(null);
  const queue = useRef<ChatItem[]>([]);
  const timer = useRef<number | undefined>(undefined);
  const lastAt = useRef(0);

  useEffect(() => {
    const newest = messages.at(-1)?.id ?? 0;
    // The history shown on joining is not news.
    if (!ready || seen.current === null) {
      seen.current = newest;
      return;
    }
    const since = seen.current;
    const fresh = messages.filter((m) => m.id > since && m.user_id !== youId);
    seen.current = Math.max(since, newest);
    if (fresh.length === 0) return;
    queue.current.push(...fresh);
    const flush = () => {
      timer.current = undefined;
      const items = queue.current;
      queue.current = [];
      const last = items.at(-1);
      if (!last) return;
      lastAt.current = Date.now();
      setText(
        items.length === 1
          ? `${last.username}: ${last.message}`
          : `${items.length} new messages. Latest from ${last.username}: ${last.message}`,
      );
    };
    if (timer.current === undefined) {
      timer.current = window.setTimeout(flush, Math.max(0, lastAt.current + MIN_GAP_MS - Date.now()));
    }
  }, [messages, youId, ready]);

  useEffect(() => () => window.clearTimeout(timer.current), []);

  return (
    <div className="dc-sr-only" aria-live="polite" aria-atomic="true">
      {text}
    </div>
  );
}
