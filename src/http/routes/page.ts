import type { FastifyInstance } from 'fastify';

/** The demo page. The React widget replaces this plain page; until then it explains how to try the chat. */
export function pageRoutes(app: FastifyInstance, options: { devAuth: boolean }) {
  app.get('/', { schema: { hide: true } }, async (_request, reply) => {
    reply.header('content-type', 'text/html; charset=utf-8');
    reply.header('cache-control', 'no-cache');
    return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>draw-chat</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:42rem;margin:3rem auto;padding:0 1rem;color:#111}code{background:#f2f2f2;padding:0 .25rem}</style>
</head>
<body>
<h1>draw-chat</h1>
<p>The live chat service is running. The API and the WebSocket protocol are described at <a href="/docs">/docs</a>.</p>
${
  options.devAuth
    ? `<p>Dev auth mode: mint a token with <code>curl -s -X POST localhost:8000/live-chat/dev/token -H 'content-type: application/json' -d '{"username":"alice"}'</code>,
then open <code>/live-chat/status</code> with it for the session id and connect a WebSocket to
<code>/live-chat/ws/&lt;session_id&gt;?token=&lt;token&gt;</code>.</p>`
    : ''
}
<p>Health: <a href="/healthz">/healthz</a> · readiness: <a href="/readyz">/readyz</a> · metrics: <a href="/metrics">/metrics</a></p>
</body>
</html>`;
  });
}
