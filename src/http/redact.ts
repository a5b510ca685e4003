/** Removes credentials from a URL before it is logged: the WebSocket token travels in the query string. */
export function redactUrl(url: string): string {
  return url.replace(/([?&](?:token|access_token)=)[^&#]*/gi, '$1[REDACTED]');
}
