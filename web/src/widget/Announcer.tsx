import { useEffect, useRef, useState } from 'react';
import type { ChatItem } from '../../../src/client/index.js';

/** Announce at most this often, so a busy chat does not drown a screen reader. */
const MIN_GAP_MS = 2500;

/**
 * A polite live region that says who wrote while the viewer is here ("New message from alice"); bursts are summed
 * up ("5 new messages, the latest from bob"). The messages' own text is not repeated: it is read from the list,
 * and a second copy of it on the page would be found twice by anyone searching the page for a message (a browser
 * test among them). The history shown on joining is not news; messages missed while reconnecting are.
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
    // Until the first `init`, nothing is shown; with it, the history (the newest id, from here on, is the mark).
    // Messages missed while reconnecting are news once the chat is back.
    if (!ready) return;
    if (seen.current === null) {
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
          ? `New message from ${last.username}`
          : `${items.length} new messages, the latest from ${last.username}`,
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
