import Fastify, { type FastifyInstance } from 'fastify';
import { mcpFastifyPlugin } from '@kubeshark-mcp/mcp-core';
import type { HubConfig } from './config';
import { GrpcTrafficSource } from './grpc-source';
import { VERSION } from './version';

export interface Hub {
  app: FastifyInstance;
  source: GrpcTrafficSource;
}

/**
 * Builds the hub: a Fastify app with the MCP plugin mounted over a gRPC traffic source, plus
 * health routes. Nothing listens until the caller calls `app.listen`.
 */
export async function buildHub(config: Readonly<HubConfig>, options: { logger?: boolean } = {}): Promise<Hub> {
  const app = Fastify({
    logger: options.logger === false ? false : { level: config.logLevel },
    bodyLimit: 1024 * 1024,
  });
  const source = new GrpcTrafficSource(config.workers, config.workerDeadlineMs);
  app.addHook('onClose', async () => source.close());

  await app.register(mcpFastifyPlugin, {
    source,
    path: config.mcpPath,
    serverInfo: { name: 'kubeshark-mcp-hub', version: VERSION },
    sessionIdleTimeoutMs: config.sessionIdleTimeoutMs,
  });

  /** Liveness plus what the hub can see: always 200 while the process serves. */
  app.get('/healthz', async () => {
    const workers = await source.workerStatuses();
    const reachable = workers.filter((w) => w.state === 'connected').length;
    return {
      status: reachable > 0 ? 'ok' : 'degraded',
      version: VERSION,
      mcp: { path: config.mcpPath, sessions: app.mcp.sessionCount() },
      workers: workers.map(({ status, ...w }) => ({
        ...w,
        ...(status
          ? {
              version: status.version,
              packets: status.packets_seen,
              flows: status.flows_tracked,
              sources: status.sources.map((s) => ({
                kind: s.kind,
                name: s.name,
                state: s.state,
                packets: s.packets,
                ...(s.error ? { error: s.error } : {}),
                ...(s.kind === 'interface'
                  ? { filter: s.filter, received_by_filter: s.received_by_filter, kernel_drops: s.kernel_drops, restarts: s.restarts, gaps: s.gaps.length }
                  : {}),
              })),
            }
          : {}),
      })),
    };
  });

  /** Readiness: 503 until at least one worker answers. */
  app.get('/readyz', async (_req, reply) => {
    const workers = await source.workerStatuses();
    const ready = workers.some((w) => w.state === 'connected');
    return reply.code(ready ? 200 : 503).send({ ready, workers: workers.map(({ status: _s, ...w }) => w) });
  });

  return { app, source };
}
