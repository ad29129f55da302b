import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest, type Implementation } from '@modelcontextprotocol/sdk/types.js';
import { ToolRegistry, type ToolDefinition } from './registry';
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
}

/** What the plugin decorates the Fastify instance with, for other plugins and for tests. */
export interface McpHandle {
  /** The tool registry: other hub plugins add their tools here. */
  readonly registry: ToolRegistry;
  registerTool<Args>(def: ToolDefinition<Args>): void;
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

const jsonRpcError = (reply: FastifyReply, status: number, code: number, message: string): FastifyReply =>
  reply.code(status).send({ jsonrpc: '2.0', error: { code, message }, id: null });

const mcpPlugin: FastifyPluginAsync<McpPluginOptions> = async (app: FastifyInstance, opts: McpPluginOptions) => {
  const path = opts.path ?? '/mcp';
  const idleMs = opts.sessionIdleTimeoutMs ?? 30 * 60 * 1000;
  const maxSessions = opts.maxSessions ?? 1000;
  const serverInfo = opts.serverInfo ?? { name: 'kubeshark-mcp', version: '0.1.0' };
  const registry = new ToolRegistry();
  for (const tool of toolsFor(opts.source)) registry.register(tool);
  const sessions = new Map<string, Session>();

  app.decorate('mcp', {
    registry,
    registerTool: <Args>(def: ToolDefinition<Args>) => registry.register(def),
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

  app.post(path, async (request, reply) => {
    const { id, session } = existing(request);
    if (session) return serve(session, request, reply);
    if (id) return jsonRpcError(reply, 404, -32001, `Session not found: ${id}. Start a new session with an initialize request.`);
    if (!isInitializeRequest(request.body)) {
      return jsonRpcError(reply, 400, -32000, 'Bad Request: no Mcp-Session-Id header; the first request of a session must be initialize.');
    }
    if (sessions.size >= maxSessions) {
      return jsonRpcError(reply, 503, -32000, `Too many MCP sessions (${maxSessions}); close unused sessions and retry.`);
    }
    const server = createMcpServer({ registry, source: opts.source, serverInfo, ...(opts.instructions ? { instructions: opts.instructions } : {}) });
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
      }),
    };
    fresh.transport.onerror = (err) => app.log.warn({ err }, 'MCP transport error');
    await server.connect(fresh.transport);
    return serve(fresh, request, reply);
  });

  const streamOrDelete = async (request: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    const { id, session } = existing(request);
    if (session) return serve(session, request, reply);
    if (id) return jsonRpcError(reply, 404, -32001, `Session not found: ${id}`);
    return jsonRpcError(reply, 400, -32000, 'Bad Request: Mcp-Session-Id header is required');
  };
  app.get(path, streamOrDelete);
  app.delete(path, streamOrDelete);
};

/** Serves MCP over Streamable HTTP on the host Fastify instance (sessions, GET stream, DELETE). */
export const mcpFastifyPlugin = fp(mcpPlugin, { name: '@kubeshark-mcp/mcp-core', fastify: '5.x' });
