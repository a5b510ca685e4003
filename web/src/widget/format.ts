/** Formatting in the viewer's own locale and time zone (Intl). */

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'short' });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric', month: 'short' });

export function formatTime(iso: string | number): string {
  return timeFormat.format(new Date(iso));
}

export function formatFull(iso: string | number): string {
  return fullFormat.format(new Date(iso));
}

/** "8:00 PM" today, "Fri, 14 Mar, 8:00 PM" on another day. */
export function formatWhen(iso: string | number, now: number): string {
  const date = new Date(iso);
  const sameDay = new Date(now).toDateString() === date.toDateString();
  return sameDay ? timeFormat.format(date) : `${dayFormat.format(date)}, ${timeFormat.format(date)}`;
}

/** A countdown: "2:59:58", "4:05", or "3d 4h" when it is days away. */
export function formatCountdown(ms: number): string {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const days = Math.floor(total / 86_400);
  const hours = Math.floor((total % 86_400) / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  if (days > 0) return `${days}d ${hours}h ${String(minutes).padStart(2, '0')}m`;
  const mm = String(minutes).padStart(2, '0');
  const ss = String(seconds).padStart(2, '0');
  return hours > 0 ? `${hours}:${mm}:${ss}` : `${minutes}:${ss}`;
}

/** Up to two initials: "Ada Lovelace" → "AL", "leo_92" → "L". */
export function initials(name: string): string {
  const words = name.trim().split(/\s+/u).filter(Boolean);
  const first = [...(words[0] ?? '?')][0] ?? '?';
  const second = words.length > 1 ? ([...(words.at(-1) ?? '')][0] ?? '') : '';
  return (first + second).toUpperCase();
}

function hash(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

/** Disc colours behind white initials: each has at least 4.5:1 contrast with white. */
const DISC = [
  '#7c3aed',
  '#2563eb',
  '#0f766e',
  '#b91c1c',
  '#c2410c',
  '#a21caf',
  '#4d7c0f',
  '#0369a1',
  '#be185d',
  '#6d28d9',
];
/** Name colours on the dark panel: each has at least 4.5:1 contrast with it. */
const NAME = [
  '#c4a7ff',
  '#8ab4ff',
  '#5eead4',
  '#ff9a9a',
  '#ffb86b',
  '#f0a6ff',
  '#a3e06b',
  '#7dd3fc',
  '#ff9ccb',
  '#b9a4ff',
];

export function discColour(userId: string): string {
  return DISC[hash(userId) % DISC.length]!;
}

export function nameColour(userId: string): string {
  return NAME[hash(userId) % NAME.length]!;
}
