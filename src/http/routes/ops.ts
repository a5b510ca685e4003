import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { withTimeout } from '../../domain/deadlines.js';
import { everyMs } from '../../observability/every.js';
import type { Metrics } from '../../observability/metrics.js';
import type { ChatStore } from '../../store/types.js';

const Health = z.object({
  status: z.enum(['ok', 'degraded', 'unavailable']),
  checks: z.record(z.string(), z.string()),
});

/** Liveness, readiness and metrics: no credentials, as probes and scrapers expect. */
export function opsRoutes(
  app: FastifyInstance,
  deps: {
    store: ChatStore;
    metrics: Metrics;
    draining: () => boolean;
    redisStatus?: () => 'ok' | 'unreachable';
  },
) {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const databaseWarning = everyMs(10_000);

  r.get(
    '/healthz',
    { schema: { tags: ['operations'], summary: 'Liveness: the process answers', response: { 200: Health } } },
    async () => ({ status: 'ok' as const, checks: {} }),
  );

  r.get(
    '/readyz',
    {
      schema: {
        tags: ['operations'],
        summary: 'Readiness: the database (and Redis, when configured) answer',
        description:
          '503 when the database or, with REDIS_URL, Redis does not answer, or the server is shutting down. An ' +
          'unreachable Redis reads `degraded`: the node still serves the viewers it has and commits every write.',
        response: { 200: Health, 503: Health },
      },
    },
    async (_request, reply) => {
      const checks: Record<string, string> = {};
      let ok = !deps.draining();
      if (!ok) checks.server = 'shutting down';
      try {
        await withTimeout(deps.store.ping(), 2000);
        checks.database = 'ok';
      } catch (err) {
        ok = false;
        // Anyone may read this answer: the driver's words (addresses, user names) go to the log, once per 10 s.
        checks.database = 'unreachable';
        if (databaseWarning()) app.log.warn({ err }, 'readiness: database unreachable');
      }
      let degraded = false;
      if (deps.redisStatus) {
        const redis = deps.redisStatus();
        checks.redis =
          redis === 'ok' ? 'ok' : 'unreachable: serving this node only, limits local, catching up when back';
        degraded = redis !== 'ok';
      }
      const status = !ok ? 'unavailable' : degraded ? 'degraded' : 'ok';
      return reply.code(ok && !degraded ? 200 : 503).send({ status, checks });
    },
  );

  app.get(
    '/metrics',
    { schema: { tags: ['operations'], summary: 'Prometheus metrics (text format)' } },
    async (_req, reply) => {
      reply.header('content-type', deps.metrics.contentType);
      return deps.metrics.text();
    },
  );
}
