import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest, type Implementation } from '@modelcontextprotocol/sdk/types.js';
import { PromptRegistry } from './prompts';
import type { PromptDefinition } from './prompt-kit';
import { ToolRegistry, type JsonTextMode, type ToolDefinition } from './registry';
import { ResourceExtensions, type StaticResource, type TemplateResource } from './resources';
import { BoundedEventStore, DEFAULT_RESUMABLE_BYTES } from './event-store';
import { coalesceStart } from './coalesce';
import { serializeOnce } from './wire';
import type { FilterPolicy } from './filters';
import { selectTool, type Toolset } from './toolsets';
import { createMcpServer } from './server';
import { TOOL_CATALOGUE, toolsFor } from './tools/catalogue';
import type { TrafficSource } from './traffic-source';

export interface McpPluginOptions {
  /** Where the tools read traffic from. */
  source: TrafficSource;
  /** URL path of the MCP endpoint (default `/mcp`). */
  path?: string;
  serverInfo?: Implementation;
  instructions?: string;
  /** Sessions idle for longer than this are closed (default 30 minutes). */
  sessionIdleTimeoutMs?: number;
  /** New sessions beyond this many are refused with 503 (default 1000). */
  maxSessions?: number;
  /** Size budget of one tool result, in tokens (about 4 characters each; default 8,000). */
  maxResultTokens?: number;
  /**
   * When tool results repeat their JSON as a text block after the text rendering: `auto`
   * (default) only for clients whose protocol revision predates structured content, `always`.
   */
  jsonText?: JsonTextMode;
  /** KFL policy for every filtered query: a global filter ANDed in, named macros, restrictions. Checked at start. */
  filters?: FilterPolicy;
  /** Toolsets offered (default: all); tools of other toolsets are not registered. */
  toolsets?: readonly Toolset[];
  /** Leave out every tool that changes state (snapshots, captures), including tools other plugins register. */
  readOnly?: boolean;
  /**
   * SSE events kept per session so a client that lost its stream can resume it with
   * Last-Event-ID (default 1000; 0 turns resumability off).
   */
  resumableEvents?: number;
  /** Bound on the JSON characters of the events kept per session (default 4 MiB); the oldest go first. */
  resumableBytes?: number;
  /**
   * Stateless mode, for several hub replicas behind a load balancer: no sessions (no
   * Mcp-Session-Id), every POST answered with plain JSON, no GET stream and no DELETE.
   * Subscriptions and progress notifications need sessions and are not available.
   */
  stateless?: boolean;
  /**
   * DNS-rebinding protection: the `Host` header values the MCP endpoint accepts, as `host`
   * (any port) or `host:port`; IPv6 addresses in brackets (`[::1]`). Compared without regard
   * to case. A request with any other Host gets 403. Default: `localhost`, `127.0.0.1` and
   * `[::1]` on any port. `*` and other wildcards are refused.
   */
  allowedHosts?: readonly string[];
  /**
   * The `Origin` header values accepted when a request carries one (browsers do; other
   * clients usually send none and pass), as full origins `http(s)://host[:port]`; without a
   * port, any port of that scheme and host. A request with any other Origin (including
   * `null`) gets 403. Default: `http(s)://localhost`, `127.0.0.1` and `[::1]` on any port.
   */
  allowedOrigins?: readonly string[];
  /**
   * Appended to the 403 message, saying how an operator allows a refused Host or Origin
   * (e.g. the setting of the application that mounts the plugin). Default: the plugin options.
   */
  allowHint?: { host?: string; origin?: string };
  /** Items per page of tools/list, resources/list and prompts/list (default 100). */
  listPageSize?: number;
}

/** What the plugin decorates the Fastify instance with, for other plugins and for tests. */
export interface McpHandle {
  /** The tool registry: other hub plugins add their tools here. */
  readonly registry: ToolRegistry;
  /**
   * Adds a tool, unless the toolset selection or read-only mode leaves it out: then it is not
   * registered, the reason is logged, and false is returned.
   */
  registerTool<Args>(def: ToolDefinition<Args>): boolean;
  /** Adds a prompt to every session; a duplicate or malformed one throws ToolDefinitionError. */
  registerPrompt(def: PromptDefinition): void;
  /** Adds a resource or resource template to every session; a duplicate or malformed one throws ToolDefinitionError. */
  registerResource(def: StaticResource | TemplateResource): void;
  /** Open MCP sessions. */
  sessionCount(): number;
}

declare module 'fastify' {
  interface FastifyInstance {
    mcp: McpHandle;
  }
}

interface Session {
  transport: StreamableHTTPServerTransport;
  server: Server;
  lastActivity: number;
  /** Requests (including open GET streams) being served; a busy session is never reaped. */
  inflight: number;
}

/** Every built-in tool; the plugin registers those its source has the capabilities for (`toolsFor`). */
export const BUILTIN_TOOLS: readonly ToolDefinition<never>[] = TOOL_CATALOGUE.map((e) => e.tool);

/** `host` or `host:port`; a host is a DNS name, an IPv4 address or a bracketed IPv6 address. */
const HOST_RE = /^(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::([0-9]{1,5}))?$/i;
/** `http(s)://host[:port]`, optionally with a trailing slash (browsers never send one). */
const ORIGIN_RE = /^(https?):\/\/(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::([0-9]{1,5}))?\/?$/i;

/** A parsed allow-list entry or header value; `port` undefined means any port (entries) or none given (headers). */
interface HostPort {
  scheme?: string;
  host: string;
  port?: number;
}

const DEFAULT_ALLOWED_HOSTS: readonly string[] = ['localhost', '127.0.0.1', '[::1]'];
const DEFAULT_ALLOWED_ORIGINS: readonly string[] = DEFAULT_ALLOWED_HOSTS.flatMap((h) => [`http://${h}`, `https://${h}`]);

function parsePort(text: string | undefined): number | undefined | null {
  if (text === undefined) return undefined;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : null;
}

function parseHost(value: string): HostPort | undefined {
  const m = HOST_RE.exec(value.trim());
  const port = parsePort(m?.[2]);
  return m && port !== null ? { host: m[1]!.toLowerCase(), ...(port !== undefined ? { port } : {}) } : undefined;
}

function parseOrigin(value: string): HostPort | undefined {
  const m = ORIGIN_RE.exec(value.trim());
  const port = parsePort(m?.[3]);
  return m && port !== null ? { scheme: m[1]!.toLowerCase(), host: m[2]!.toLowerCase(), ...(port !== undefined ? { port } : {}) } : undefined;
}

/** Parses an allow-list once, at registration; a wildcard or malformed entry is a programming error. */
function compileAllowList(option: string, entries: readonly string[], parse: (v: string) => HostPort | undefined, form: string): HostPort[] {
  if (entries.length === 0) throw new Error(`mcp plugin: ${option} is empty, which would refuse every request; leave it unset for the loopback default`);
  return entries.map((entry) => {
    if (entry.includes('*')) throw new Error(`mcp plugin: ${option} entry "${entry}": wildcards are not supported (they would disable DNS-rebinding protection); list each ${form}`);
    const parsed = parse(entry);
    if (!parsed) throw new Error(`mcp plugin: ${option} entry "${entry}" is not ${form}`);
    return parsed;
  });
}

/**
 * Whether a header value matches an entry. An entry without a port matches any port; a header
 * without a port (the scheme's default port) matches an entry with port 80 or 443 as well.
 */
function matches(value: HostPort, entry: HostPort, defaultPorts: readonly number[]): boolean {
  if (value.host !== entry.host || value.scheme !== entry.scheme) return false;
  if (entry.port === undefined) return true;
  return value.port === undefined ? defaultPorts.includes(entry.port) : value.port === entry.port;
}

/** Quotes a client-supplied header for an error message, cut short so it cannot bloat the reply. */
const quote = (value: string): string => JSON.stringify(value.length > 200 ? `${value.slice(0, 200)}...` : value);

const jsonRpcError = (reply: FastifyReply, status: number, code: number, message: string): FastifyReply =>
  reply.code(status).send({ jsonrpc: '2.0', error: { code, message }, id: null });

const mcpPlugin: FastifyPluginAsync<McpPluginOptions> = async (app: FastifyInstance, opts: McpPluginOptions) => {
  const path = opts.path ?? '/mcp';
  const idleMs = opts.sessionIdleTimeoutMs ?? 30 * 60 * 1000;
  const maxSessions = opts.maxSessions ?? 1000;
  const serverInfo = opts.serverInfo ?? { name: 'kubeshark-mcp', version: '0.1.0' };
  const registry = new ToolRegistry({
    ...(opts.maxResultTokens === undefined ? {} : { maxResultTokens: opts.maxResultTokens }),
    ...(opts.filters ? { filters: opts.filters } : {}),
    ...(opts.jsonText ? { jsonText: opts.jsonText } : {}),
  });
  const selection = { ...(opts.toolsets ? { toolsets: opts.toolsets } : {}), ...(opts.readOnly ? { readOnly: true } : {}) };
  const addTool = <Args>(def: ToolDefinition<Args>): boolean => {
    const verdict = selectTool(def as unknown as ToolDefinition<never>, selection);
    if (!verdict.offered) {
      app.log.info({ tool: def.name, reason: verdict.reason }, 'MCP tool not offered');
      return false;
    }
    registry.register(def);
    return true;
  };
  for (const tool of toolsFor(opts.source)) addTool(tool);
  const resumableEvents = opts.resumableEvents ?? 1000;
  const prompts = new PromptRegistry();
  const resources = new ResourceExtensions();
  const sessions = new Map<string, Session>();
  const allowedHosts = compileAllowList('allowedHosts', opts.allowedHosts ?? DEFAULT_ALLOWED_HOSTS, parseHost, 'a host or host:port');
  const allowedOrigins = compileAllowList('allowedOrigins', opts.allowedOrigins ?? DEFAULT_ALLOWED_ORIGINS, parseOrigin, 'an origin like https://host or https://host:port');
  const hostHint = opts.allowHint?.host ?? 'add it to the allowedHosts option of the MCP plugin';
  const originHint = opts.allowHint?.origin ?? 'add it to the allowedOrigins option of the MCP plugin';

  /**
   * DNS-rebinding protection (MCP transport security): runs as the routes' onRequest hook, so
   * before the body is read and before the handler hijacks the reply. A page on a foreign site
   * whose name resolves to this machine sends that name as Host and its own Origin.
   */
  const guard = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    const rawHost = request.headers.host;
    const host = typeof rawHost === 'string' ? parseHost(rawHost) : undefined;
    if (!host || !allowedHosts.some((e) => matches(host, e, [80, 443]))) {
      const shown = typeof rawHost === 'string' ? quote(rawHost) : '(none)';
      request.log.warn({ host: rawHost, path }, 'MCP request refused: Host not allowed (DNS-rebinding protection)');
      return jsonRpcError(reply, 403, -32000, `Forbidden: Host ${shown} is not allowed for ${path} (DNS-rebinding protection). To allow it, ${hostHint}.`);
    }
    const rawOrigin = request.headers.origin;
    if (rawOrigin === undefined) return undefined; // not a browser: nothing to check
    const originText = Array.isArray(rawOrigin) ? rawOrigin.join(', ') : rawOrigin;
    const origin = typeof rawOrigin === 'string' ? parseOrigin(rawOrigin) : undefined;
    if (!origin || !allowedOrigins.some((e) => matches(origin, e, origin.scheme === 'https' ? [443] : [80]))) {
      request.log.warn({ origin: rawOrigin, path }, 'MCP request refused: Origin not allowed (DNS-rebinding protection)');
      return jsonRpcError(reply, 403, -32000, `Forbidden: Origin ${quote(originText)} is not allowed for ${path} (DNS-rebinding protection). To allow it, ${originHint}.`);
    }
    return undefined;
  };

  app.decorate('mcp', {
    registry,
    registerTool: addTool,
    registerPrompt: (def: PromptDefinition) => prompts.register(def),
    registerResource: (def: StaticResource | TemplateResource) => resources.register(def),
    sessionCount: () => sessions.size,
  } satisfies McpHandle);

  const closeSession = async (id: string): Promise<void> => {
    const s = sessions.get(id);
    if (!s) return;
    sessions.delete(id);
    await s.transport.close().catch(() => undefined);
    await s.server.close().catch(() => undefined);
  };

  const reaper = setInterval(
    () => {
      const cutoff = Date.now() - idleMs;
      for (const [id, s] of sessions) {
        if (s.inflight === 0 && s.lastActivity < cutoff) {
          app.log.info({ sessionId: id }, 'closing idle MCP session');
          void closeSession(id);
        }
      }
    },
    Math.min(60_000, Math.max(1000, Math.floor(idleMs / 2))),
  );
  reaper.unref();

  // preClose, not onClose: Fastify runs onClose only after in-flight requests finish, and an
  // open GET stream never finishes on its own, so app.close() would wait for the clients.
  app.addHook('preClose', async () => {
    clearInterval(reaper);
    await Promise.all([...sessions.keys()].map(closeSession));
  });

  const serve = async (session: Session, request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    session.inflight++;
    session.lastActivity = Date.now();
    reply.hijack();
    if (request.method === 'POST') coalesceStart(reply.raw);
    try {
      await session.transport.handleRequest(request.raw, reply.raw, request.body);
    } finally {
      session.inflight--;
      session.lastActivity = Date.now();
    }
  };

  const existing = (request: FastifyRequest): { id?: string; session?: Session } => {
    const header = request.headers['mcp-session-id'];
    const id = Array.isArray(header) ? header[0] : header;
    return id ? { id, session: sessions.get(id) } : {};
  };

  const newServer = (): Server =>
    createMcpServer({
      registry,
      source: opts.source,
      serverInfo,
      prompts,
      resources,
      ...(opts.instructions ? { instructions: opts.instructions } : {}),
      ...(opts.listPageSize ? { listPageSize: opts.listPageSize } : {}),
    });

  if (opts.stateless) {
    // One server and transport per request: any replica can answer any request.
    app.post(path, { onRequest: guard }, async (request, reply) => {
      const server = newServer();
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
      transport.onerror = (err) => app.log.warn({ err }, 'MCP transport error');
      await server.connect(transport);
      reply.hijack();
      reply.raw.on('close', () => {
        void transport.close().catch(() => undefined);
        void server.close().catch(() => undefined);
      });
      await transport.handleRequest(request.raw, reply.raw, request.body);
    });
    const notAllowed = async (_request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> =>
      jsonRpcError(reply.header('allow', 'POST'), 405, -32000, 'Method Not Allowed: this server is stateless (no sessions, no GET stream, no DELETE); send requests with POST.');
    app.get(path, { onRequest: guard }, notAllowed);
    app.delete(path, { onRequest: guard }, notAllowed);
    return;
  }

  app.post(path, { onRequest: guard }, async (request, reply) => {
    const { id, session } = existing(request);
    if (session) return serve(session, request, reply);
    if (id) return jsonRpcError(reply, 404, -32001, `Session not found: ${id}. Start a new session with an initialize request.`);
    if (!isInitializeRequest(request.body)) {
      return jsonRpcError(reply, 400, -32000, 'Bad Request: no Mcp-Session-Id header; the first request of a session must be initialize.');
    }
    if (sessions.size >= maxSessions) {
      return jsonRpcError(reply, 503, -32000, `Too many MCP sessions (${maxSessions}); close unused sessions and retry.`);
    }
    const server = newServer();
    const fresh: Session = {
      server,
      lastActivity: Date.now(),
      inflight: 0,
      transport: new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (sid) => {
          sessions.set(sid, fresh);
        },
        onsessionclosed: (sid) => {
          void closeSession(sid);
        },
        ...(resumableEvents > 0 ? { eventStore: new BoundedEventStore(resumableEvents, opts.resumableBytes ?? DEFAULT_RESUMABLE_BYTES) } : {}),
      }),
    };
    fresh.transport.onerror = (err) => app.log.warn({ err }, 'MCP transport error');
    serializeOnce(fresh.transport);
    await server.connect(fresh.transport);
    return serve(fresh, request, reply);
  });

  const streamOrDelete = async (request: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    const { id, session } = existing(request);
    if (session) return serve(session, request, reply);
    if (id) return jsonRpcError(reply, 404, -32001, `Session not found: ${id}`);
    return jsonRpcError(reply, 400, -32000, 'Bad Request: Mcp-Session-Id header is required');
  };
  // The guard is a route hook, not an app hook: this plugin is not encapsulated (fastify-plugin),
  // so an app-level hook would also run on the host's other routes.
  app.get(path, { onRequest: guard }, streamOrDelete);
  app.delete(path, { onRequest: guard }, streamOrDelete);
};

/** Serves MCP over Streamable HTTP on the host Fastify instance (sessions, GET stream, DELETE). */
export const mcpFastifyPlugin = fp(mcpPlugin, { name: '@kubeshark-mcp/mcp-core', fastify: '5.x' });
