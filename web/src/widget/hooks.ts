import { useEffect, useRef, useState, useSyncExternalStore } from 'react';
import type { ChatClient, ChatSnapshot } from '../../../src/client/index.js';

/** The client's snapshot, re-rendering on every change. */
export function useChatSnapshot(client: ChatClient): ChatSnapshot {
  return useSyncExternalStore(client.subscribe, client.getSnapshot, client.getSnapshot);
}

/**
 * The current time, read at each render, and a render every `intervalMs` while `active`; `offsetMs` shifts it
 * (server clock). The time is the render's, not the last tick's: the first render after the clock starts (a notice
 * appears) showed the time it last ticked at, a minute or an hour before, and a countdown read more than it should.
 */
export function useNow(intervalMs = 1000, active = true, offsetMs = 0): number {
  const [, setTicks] = useState(0);
  useEffect(() => {
    if (!active) return;
    const timer = window.setInterval(() => setTicks((n) => n + 1), intervalMs);
    return () => window.clearInterval(timer);
  }, [intervalMs, active]);
  return Date.now() + offsetMs;
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
