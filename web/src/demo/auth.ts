import { tokenExpiresAt } from '../../../src/client/index.js';

/** How the server authenticates viewers: told by the page's `<meta name="draw-chat-auth">` (see page.ts). */
export type AuthMode = 'dev' | 'production';

export function authMode(): AuthMode {
  const meta = document.querySelector<HTMLMetaElement>('meta[name="draw-chat-auth"]');
  // The Vite dev server serves the page without the meta tag; it proxies to a dev-mode server.
  return meta?.content === 'production' ? 'production' : 'dev';
}

export interface DevIdentity {
  username: string;
  host: boolean;
  token: string;
}

const KEY = 'draw-chat:dev-identity';
/** Mint a new dev token when the stored one has less than this left. */
const RENEW_MS = 5 * 60_000;

/** The dev identity of this tab (sessionStorage: a reload keeps it, another tab can be someone else). */
export function storedIdentity(): DevIdentity | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    if (!raw) return null;
    const value = JSON.parse(raw) as Partial<DevIdentity>;
    if (typeof value.username !== 'string' || typeof value.token !== 'string') return null;
    return { username: value.username, host: value.host === true, token: value.token };
  } catch {
    return null;
  }
}

export function forgetIdentity(): void {
  sessionStorage.removeItem(KEY);
}

/** Asks the server for a dev token (POST /live-chat/dev/token) and remembers it for this tab. */
export async function devJoin(username: string, host: boolean): Promise<DevIdentity> {
  const res = await fetch('/live-chat/dev/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, ...(host ? { roles: ['host'] } : {}) }),
  });
  const body = (await res.json().catch(() => null)) as {
    token?: string;
    error?: { message?: string };
  } | null;
  if (!res.ok || !body?.token) throw new Error(body?.error?.message ?? `The server said ${res.status}.`);
  const identity = { username, host, token: body.token };
  sessionStorage.setItem(KEY, JSON.stringify(identity));
  return identity;
}

/**
 * A getToken for the chat client: the stored dev token, renewed when it is about to run out or when the server
 * refused it (a dev server started afresh signs with a new key).
 */
export function devTokenSource(
  identity: DevIdentity,
): (context: { refused: string | null }) => Promise<string> {
  let current = identity;
  return async ({ refused }) => {
    const expiresAt = tokenExpiresAt(current.token);
    if (refused !== current.token && expiresAt !== null && expiresAt - Date.now() > RENEW_MS)
      return current.token;
    current = await devJoin(current.username, current.host);
    return current.token;
  };
}

/**
 * In production the draw platform passes the viewer's token in the URL fragment (`/#token=…`), which never
 * reaches a server log. It is taken out of the address bar at once.
 */
export function tokenFromFragment(): string | null {
  const params = new URLSearchParams(window.location.hash.replace(/^#/, ''));
  const token = params.get('token');
  if (token) {
    history.replaceState(null, '', window.location.pathname + window.location.search);
    sessionStorage.setItem(TOKEN_KEY, token);
    return token;
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

const TOKEN_KEY = 'draw-chat:token';
