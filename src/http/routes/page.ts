import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';

/** The built widget (`npm run build:web`): from src/http/routes and from dist/http/routes alike. */
export const WEB_DIST = fileURLToPath(new URL('../../../web/dist/', import.meta.url));

/** Hashed file names change with their content, so browsers may keep them for good. */
const IMMUTABLE = 'public, max-age=31536000, immutable';
/** The embed bundle keeps its name across releases: short cache, then revalidate. */
const SHORT = 'public, max-age=300, must-revalidate';

/**
 * The page only talks to its own origin; avatars may come from anywhere over https. Inline styles stay allowed
 * for React's `style` attributes; scripts are our files only, so an injected `<script>` could not run.
 */
const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' https: http: data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "object-src 'none'",
].join('; ');

/**
 * `GET /`: the demo draw page with the chat widget, and its static files. The page learns the auth mode from a
 * meta tag injected here (no extra endpoint). Without a built widget it falls back to a plain page.
 */
export async function pageRoutes(app: FastifyInstance, options: { devAuth: boolean; webDist?: string }) {
  const dist = options.webDist ?? WEB_DIST;
  let index: string | undefined;
  try {
    index = readFileSync(join(dist, 'index.html'), 'utf8');
  } catch {
    app.log.warn(`no built widget in ${dist} (run npm run build:web); GET / serves a plain page`);
  }
  if (index === undefined) {
    app.get('/', { schema: { hide: true } }, async (_request, reply) => {
      reply.header('content-type', 'text/html; charset=utf-8');
      reply.header('cache-control', 'no-cache');
      return plainPage(options.devAuth);
    });
    return;
  }

  const meta = `<meta name="draw-chat-auth" content="${options.devAuth ? 'dev' : 'production'}">`;
  const page = index.replace('</head>', `    ${meta}\n  </head>`);
  app.get('/', { schema: { hide: true } }, async (_request, reply) => {
    reply.header('content-type', 'text/html; charset=utf-8');
    reply.header('cache-control', 'no-cache');
    reply.header('content-security-policy', CSP);
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'no-referrer');
    return page;
  });

  await app.register(fastifyStatic, {
    root: dist,
    prefix: '/',
    // One route per built file, read at start: other paths stay with the JSON 404 handler.
    wildcard: false,
    index: false,
    globIgnore: ['index.html'],
    cacheControl: false,
    schemaHide: true,
    setHeaders(res, path) {
      const file = path.replaceAll('\\', '/');
      if (file.includes('/assets/')) res.setHeader('cache-control', IMMUTABLE);
      else if (file.includes('/embed/')) res.setHeader('cache-control', SHORT);
      else res.setHeader('cache-control', 'no-cache');
      // Module scripts load in CORS mode: a draw platform's page on another origin may load the embed bundle.
      if (file.includes('/embed/') || file.includes('/assets/')) {
        res.setHeader('access-control-allow-origin', '*');
        res.setHeader('cross-origin-resource-policy', 'cross-origin');
      }
      res.setHeader('x-content-type-options', 'nosniff');
    },
  });
}

function plainPage(devAuth: boolean): string {
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>draw-chat</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:42rem;margin:3rem auto;padding:0 1rem;color:#111}code{background:#f2f2f2;padding:0 .25rem}</style>
</head>
<body>
<h1>draw-chat</h1>
<p>The live chat service is running, but the chat widget is not built: run <code>npm run build</code>.
The API and the WebSocket protocol are described at <a href="/docs">/docs</a>.</p>
${
  devAuth
    ? `<p>Dev auth mode: mint a token with <code>curl -s -X POST localhost:8000/live-chat/dev/token -H 'content-type: application/json' -d '{"username":"alice"}'</code>,
then open <code>/live-chat/status</code> with it for the session id and connect a WebSocket to
<code>/live-chat/ws/&lt;session_id&gt;?token=&lt;token&gt;</code>.</p>`
    : ''
}
<p>Health: <a href="/healthz">/healthz</a> · readiness: <a href="/readyz">/readyz</a> · metrics: <a href="/metrics">/metrics</a></p>
</body>
</html>`;
}
