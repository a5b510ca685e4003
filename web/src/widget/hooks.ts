import { useEffect, useRef, useState, useSyncExternalStore } from 'react';
import type { ChatClient, ChatSnapshot } from '../../../src/client/index.js';

/** The client's snapshot, re-rendering on every change. */
export function useChatSnapshot(client: ChatClient): ChatSnapshot {
  return useSyncExternalStore(client.subscribe, client.getSnapshot, client.getSnapshot);
}

/** The current time, refreshed every `intervalMs` while `active`; `offsetMs` shifts it (server clock). */
export function useNow(intervalMs = 1000, active = true, offsetMs = 0): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!active) return;
    setNow(Date.now());
    const timer = window.setInterval(() => setNow(Date.now()), intervalMs);
    return () => window.clearInterval(timer);
  }, [intervalMs, active]);
  return now + offsetMs;
}

/** True when the viewer asked the system for less motion. */
export function useReducedMotion(): boolean {
  const query = '(prefers-reduced-motion: reduce)';
  return useSyncExternalStore(
    (onChange) => {
      const list = window.matchMedia(query);
      list.addEventListener('change', onChange);
      return () => list.removeEventListener('change', onChange);
    },
    () => window.matchMedia(query).matches,
    () => false,
  );
}

/** A ref that always holds the latest value, so effects can read it without re-subscribing. */
export function useLatest<T>(value: T) {
  const ref = useRef(value);
  ref.current = value;
  return ref;
}
