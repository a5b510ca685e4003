/**
 * Removes credentials from a URL before it is logged: the WebSocket token travels in the query string. Besides
 * `token`/`access_token`, any parameter named like a key, secret or password (a backend that puts the admin key
 * in a URL by mistake), and anything shaped like a JWT wherever it appears (a token pasted into a path), is
 * redacted (issue 6: found by test/hardening/auth.test.ts H-AUTH-17).
 */
export function redactUrl(url: string): string {
  return url
    .replace(
      /([?&;](?:[\w.-]*token|[\w.-]*key|[\w.-]*secret|password|passwd|auth[\w.-]*)=)[^&#;]*/gi,
      '$1[REDACTED]',
    )
    .replace(/eyJ[\w-]*\.[\w-]*\.[\w-]*/g, '[REDACTED]');
}
