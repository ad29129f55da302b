import { tmpdir } from 'node:os';
import Fastify, { type FastifyInstance } from 'fastify';
import { mcpFastifyPlugin } from '@kubeshark-mcp/mcp-core';
import { defaultAllowedHosts, defaultAllowedOrigins, filterPolicy, type HubConfig } from './config';
import { DnsDiscovery, StaticDiscovery, type AddressResolver, type WorkerDiscovery, type WorkerSink } from './discovery';
import { DownloadStore, downloadRoutes } from './downloads';
import { EndpointSliceDiscovery } from './endpointslice-discovery';
import { GrpcTrafficSource } from './grpc-source';
import { VERSION } from './version';

export interface Hub {
  app: FastifyInstance;
  source: GrpcTrafficSource;
  /** PCAP exports waiting to be downloaded. */
  downloads: DownloadStore;
}

/** http://<host>:<port> of the listening hub (the configured port until it listens, e.g. on port 0). */
function listeningBaseUrl(app: FastifyInstance, config: Readonly<HubConfig>): string {
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host.includes(':') && !config.host.startsWith('[') ? `[${config.host}]` : config.host;
  return `http://${host}:${port}`;
}

/**
 * Builds the hub: a Fastify app with the MCP plugin mounted over a gRPC traffic source, plus
 * health routes. Nothing listens until the caller calls `app.listen`.
 */
export interface BuildHubOptions {
  logger?: boolean;
  /** DNS resolver for `workersDns` (tests inject one; default: the system's). */
  resolver?: AddressResolver;
  /** Replaces the discovery the configuration describes (e.g. Kubernetes EndpointSlices). */
  discovery?: WorkerDiscovery;
}

/** Several discovery sources feeding one pool: each adds and removes its own addresses. */
class CombinedDiscovery implements WorkerDiscovery {
  readonly description: string;
  constructor(private readonly parts: readonly WorkerDiscovery[]) {
    this.description = parts.map((p) => p.description).join(' + ');
  }
  start(sink: WorkerSink): void {
    for (const p of this.parts) p.start(sink);
  }
  stop(): void {
    for (const p of this.parts) p.stop();
  }
  async ready(): Promise<void> {
    await Promise.all(this.parts.map((p) => p.ready?.()));
  }
}

/** The discovery the configuration describes: the static list, DNS, EndpointSlices, or several. */
export function discoveryFor(config: Readonly<HubConfig>, options: { resolver?: AddressResolver; onError?: (err: Error) => void } = {}): WorkerDiscovery {
  const parts: WorkerDiscovery[] = [];
  if (config.workers.length) parts.push(new StaticDiscovery(config.workers));
  if (config.workersDns) {
    const i = config.workersDns.lastIndexOf(':');
    const name = config.workersDns.slice(0, i).replace(/^\[|\]$/g, '');
    parts.push(
      new DnsDiscovery({
        name,
        port: Number(config.workersDns.slice(i + 1)),
        intervalMs: config.workersDnsIntervalMs,
        ...(options.resolver ? { resolver: options.resolver } : {}),
        ...(options.onError ? { onError: options.onError } : {}),
      }),
    );
  }
  if (config.workersK8s) {
    const m = /^([^/]+)\/([^:]+):(\d+)$/.exec(config.workersK8s)!;
    parts.push(
      new EndpointSliceDiscovery({
        namespace: m[1]!,
        service: m[2]!,
        port: Number(m[3]),
        intervalMs: config.workersDnsIntervalMs,
        ...(config.kubeApi ? { apiUrl: config.kubeApi } : {}),
        ...(config.kubeTokenFile ? { tokenFile: config.kubeTokenFile } : {}),
        ...(options.onError ? { onError: options.onError } : {}),
      }),
    );
  }
  return parts.length === 1 ? parts[0]! : new CombinedDiscovery(parts);
}

export async function buildHub(config: Readonly<HubConfig>, options: BuildHubOptions = {}): Promise<Hub> {
  const app = Fastify({
    logger: options.logger === false ? false : { level: config.logLevel },
    // 1 MiB: MCP requests are small JSON-RPC messages; larger bodies get 413 before any handler.
    bodyLimit: 1024 * 1024,
  });
  const downloads = new DownloadStore({
    parentDir: config.exportDir ?? tmpdir(),
    maxBytes: config.exportMaxBytes,
    ttlMs: config.exportTtlMs,
    baseUrl: () => config.publicUrl ?? listeningBaseUrl(app, config),
  });
  const discovery = options.discovery ?? discoveryFor(config, { ...(options.resolver ? { resolver: options.resolver } : {}), onError: (err) => app.log.warn(`worker discovery failed (known workers are kept): ${err.message}`) });
  const source = new GrpcTrafficSource(discovery, config.workerDeadlineMs, downloads);
  // The first DNS answer, before the hub serves, so the first query sees the workers; a slow
  // resolver delays start-up by at most one worker deadline.
  if (discovery.ready) {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([discovery.ready(), new Promise<void>((resolve) => (timer = setTimeout(resolve, config.workerDeadlineMs)))]);
    clearTimeout(timer);
  }
  app.addHook('onClose', async () => {
    source.close();
    downloads.close();
  });
  await app.register(downloadRoutes, { store: downloads });

  await app.register(mcpFastifyPlugin, {
    source,
    path: config.mcpPath,
    serverInfo: { name: 'kubeshark-mcp-hub', version: VERSION },
    sessionIdleTimeoutMs: config.sessionIdleTimeoutMs,
    maxResultTokens: config.maxResultTokens,
    ...(config.jsonText ? { jsonText: config.jsonText } : {}),
    filters: filterPolicy(config),
    ...(config.toolsets ? { toolsets: config.toolsets } : {}),
    readOnly: config.readOnly,
    stateless: config.stateless,
    // DNS-rebinding protection on /mcp only. /healthz, /readyz and /downloads are not checked:
    // they change nothing, and a page that rebinds a name to the hub cannot guess a download
    // token; health output (versions, counters, capture file names) is not secret on a
    // loopback-only hub. Revisit with authentication.
    allowedHosts: config.allowedHosts ?? defaultAllowedHosts(config),
    allowedOrigins: config.allowedOrigins ?? defaultAllowedOrigins(config),
    allowHint: {
      host: 'add it to HUB_ALLOWED_HOSTS on the hub (comma-separated host or host:port; setting it replaces the loopback default)',
      origin: 'add it to HUB_ALLOWED_ORIGINS on the hub (comma-separated origins like https://app.example.com; setting it replaces the loopback default)',
    },
  });

  /** Liveness plus what the hub can see: always 200 while the process serves. */
  app.get('/healthz', async () => {
    const workers = await source.workerStatuses();
    const reachable = workers.filter((w) => w.state === 'connected').length;
    return {
      status: reachable > 0 ? 'ok' : 'degraded',
      version: VERSION,
      discovery: source.discoveryDescription,
      mcp: { path: config.mcpPath, sessions: app.mcp.sessionCount() },
      downloads: downloads.count(),
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

  /** Readiness: 503 until at least one worker answers (and while none does). */
  app.get('/readyz', async (_req, reply) => {
    const workers = await source.workerStatuses();
    const ready = workers.some((w) => w.state === 'connected');
    return reply.code(ready ? 200 : 503).send({ ready, workers: workers.map(({ status: _s, ...w }) => w) });
  });

  return { app, source, downloads };
}
