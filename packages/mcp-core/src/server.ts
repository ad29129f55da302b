import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  CompleteRequestSchema,
  ErrorCode,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListResourcesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ReadResourceRequestSchema,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
  type Implementation,
  type LoggingLevel,
} from '@modelcontextprotocol/sdk/types.js';
import { redactValue } from './redact';
import { PromptRegistry } from './prompts';
import { LiveWatcher, ResourceCatalogue, resourceNotFound, workloadNames, type ResourceExtensions } from './resources';
import { UnknownToolError, type ProgressUpdate, type ToolRegistry } from './registry';
import type { TrafficSource } from './traffic-source';

export interface McpServerOptions {
  registry: ToolRegistry;
  source: TrafficSource;
  serverInfo: Implementation;
  /** Shown to clients at initialisation: how to use the server. */
  instructions?: string;
  /** The prompts served (default: the built-in investigations, BUILTIN_PROMPTS). */
  prompts?: PromptRegistry;
  /** How often subscriptions poll for new traffic (default 2000 ms); notifications come at most this often. */
  liveIntervalMs?: number;
  /** Resources other plugins added. */
  resources?: ResourceExtensions;
  /** Items per page of tools/list, resources/list, resources/templates/list and prompts/list (default 100). */
  listPageSize?: number;
}

const LEVELS: readonly LoggingLevel[] = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];

/**
 * One page of a list method: the cursor is the base64url offset this server issued; anything
 * else is an invalid-params error.
 */
function page<T>(items: readonly T[], cursor: string | undefined, size: number): { items: T[]; nextCursor?: string } {
  let offset = 0;
  if (cursor !== undefined) {
    const m = /^o(\d{1,9})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (!m || Number(m[1]) > items.length) throw new McpError(ErrorCode.InvalidParams, `Invalid cursor: ${JSON.stringify(cursor.slice(0, 64))} is not a cursor this list issued`);
    offset = Number(m[1]);
  }
  const next = offset + size;
  return { items: items.slice(offset, next), ...(next < items.length ? { nextCursor: Buffer.from(`o${next}`).toString('base64url') } : {}) };
}

/** Completions returned at most (the MCP limit is 100). */
const MAX_COMPLETIONS = 100;

/** Prompt arguments with completions: recent API call ids, the addresses that talk most, Kubernetes names. */
async function completePromptArgument(source: TrafficSource, catalogue: ResourceCatalogue, prompt: string, argument: string, prefix: string, signal: AbortSignal): Promise<string[]> {
  if (argument === 'namespace') return workloadNames(source, 'namespace', prefix, { signal }).catch(() => []);
  if (argument === 'service') return workloadNames(source, 'service', prefix, { signal }).catch(() => []);
  if (argument === 'pod') return workloadNames(source, 'pod', prefix, { signal }).catch(() => []);
  if (prompt === 'trace_request' && argument === 'id') return catalogue.complete('kubeshark://api-calls/{id}', 'id', prefix, { signal }).catch(() => []);
  if ((prompt === 'debug_connection' && argument === 'ip') || (prompt === 'debug_connection' && argument === 'endpoint')) {
    const s = await source.getFlowSummary({ top: 50 }, { signal });
    const ips = [...new Set([...s.top_by_bytes, ...s.top_by_packets].map((t) => t.ip))];
    return ips.filter((ip) => ip.startsWith(prefix));
  }
  return [];
}

/** Shared by every server that is not given its own: prompts hold no state. */
const DEFAULT_PROMPTS = new PromptRegistry();

export const DEFAULT_INSTRUCTIONS =
  'Network truth for a Kubernetes cluster, from packets captured on every node. Start with get_l4_flow_summary ' +
  'for an overview, get_api_stats for API calls per endpoint (calls, failures, latency), then drill down with ' +
  'list_l4_flows (connections) and list_api_calls / get_api_call (requests with headers and bodies). Every answer ' +
  'lists the nodes it covers; a node marked unavailable means its traffic is missing, not absent. When an answer is ' +
  'empty, get_status and get_data_boundaries (where offered) tell whether that traffic was captured at all. Lists are ' +
  'paged: when a result has nextCursor, pass it back as cursor for the next page. The prompts (investigate_failed_request, ' +
  'find_errors, latency_analysis, network_health, security_audit, show_topology, compare_traffic, debug_connection, ' +
  'trace_request) give step-by-step plans; resources include live traffic (subscribable) and the service map.';

/**
 * One MCP server (protocol endpoint) over the shared tool registry. The low-level SDK `Server`
 * is used rather than `McpServer` so tools keep plain JSON Schemas validated by ajv.
 */
export function createMcpServer(options: McpServerOptions): Server {
  const server = new Server(options.serverInfo, {
    capabilities: { tools: { listChanged: false }, prompts: { listChanged: false }, resources: { subscribe: true, listChanged: false }, completions: {}, logging: {} },
    instructions: options.instructions ?? DEFAULT_INSTRUCTIONS,
  });
  const prompts = options.prompts ?? DEFAULT_PROMPTS;
  const pageSize = options.listPageSize ?? 100;
  server.setRequestHandler(ListToolsRequestSchema, (request) => {
    const p = page(options.registry.list(), request.params?.cursor, pageSize);
    return { tools: p.items, ...(p.nextCursor ? { nextCursor: p.nextCursor } : {}) };
  });
  server.setRequestHandler(ListPromptsRequestSchema, (request) => {
    const p = page(prompts.list(), request.params?.cursor, pageSize);
    return { prompts: p.items, ...(p.nextCursor ? { nextCursor: p.nextCursor } : {}) };
  });

  // Logging: the client's level (logging/setLevel); until it sets one, warnings and above.
  let level: LoggingLevel = 'warning';
  server.setRequestHandler(SetLevelRequestSchema, (request) => {
    level = request.params.level;
    return {};
  });
  const log = (at: LoggingLevel, data: Record<string, unknown>): void => {
    if (LEVELS.indexOf(at) < LEVELS.indexOf(level)) return;
    void server.sendLoggingMessage({ level: at, logger: 'kubeshark-mcp', data: redactValue(data) }).catch(() => undefined);
  };
  server.setRequestHandler(GetPromptRequestSchema, (request) => prompts.get(request.params.name, request.params.arguments ?? {}));
  const resources = new ResourceCatalogue(options.source, options.resources);
  const live = new LiveWatcher(options.source, (uri) => server.sendResourceUpdated({ uri }), options.liveIntervalMs);
  const closed = server.onclose;
  server.onclose = () => {
    live.stop();
    closed?.();
  };
  server.setRequestHandler(ListResourcesRequestSchema, (request) => {
    const p = page(resources.list(), request.params?.cursor, pageSize);
    return { resources: p.items, ...(p.nextCursor ? { nextCursor: p.nextCursor } : {}) };
  });
  server.setRequestHandler(ListResourceTemplatesRequestSchema, (request) => {
    const p = page(resources.listTemplates(), request.params?.cursor, pageSize);
    return { resourceTemplates: p.items, ...(p.nextCursor ? { nextCursor: p.nextCursor } : {}) };
  });
  server.setRequestHandler(ReadResourceRequestSchema, async (request, extra) => {
    const uri = request.params.uri;
    const content = await resources.read(uri, { signal: extra.signal });
    return { contents: [{ uri, mimeType: content.mimeType, text: content.text }] };
  });
  server.setRequestHandler(SubscribeRequestSchema, (request) => {
    const uri = request.params.uri;
    if (!resources.isSubscribable(uri)) {
      if (resources.list().some((r) => r.uri === uri)) throw new McpError(ErrorCode.InvalidParams, `Resource ${uri} does not change by itself; read it again instead. Subscribable: kubeshark://traffic/live`);
      throw resourceNotFound(uri);
    }
    live.subscribe(uri);
    return {};
  });
  server.setRequestHandler(UnsubscribeRequestSchema, (request) => {
    live.unsubscribe(request.params.uri);
    return {};
  });
  server.setRequestHandler(CompleteRequestSchema, async (request, extra) => {
    const { ref, argument } = request.params;
    let values: string[];
    if (ref.type === 'ref/resource') values = await resources.complete(ref.uri, argument.name, argument.value, { signal: extra.signal });
    else {
      if (!prompts.list().some((p) => p.name === ref.name)) throw new McpError(ErrorCode.InvalidParams, `Unknown prompt: ${ref.name}`);
      values = await completePromptArgument(options.source, resources, ref.name, argument.name, argument.value, extra.signal);
    }
    return { completion: { values: values.slice(0, MAX_COMPLETIONS), total: values.length, hasMore: values.length > MAX_COMPLETIONS } };
  });
  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const name = request.params.name;
    const started = Date.now();
    try {
      const token = extra._meta?.progressToken;
      // Streamable HTTP clients send their negotiated revision on every request after initialize.
      const version = extra.requestInfo?.headers['mcp-protocol-version'];
      const result = await options.registry.call(name, request.params.arguments, {
        source: options.source,
        signal: extra.signal,
        ...(typeof version === 'string' ? { protocolVersion: version } : {}),
        ...(token !== undefined
          ? { progress: (update: ProgressUpdate) => extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, ...update } }) }
          : {}),
      });
      const ms = Date.now() - started;
      if (result.isError) {
        log('warning', { event: 'tool_error', tool: name, ms, message: result.content.map((c) => (c.type === 'text' ? c.text : '')).join(' ').slice(0, 2000) });
      } else {
        const nodes = (result.structuredContent as { nodes?: { node: string; state: string; message?: string }[] } | undefined)?.nodes ?? [];
        const missing = nodes.filter((n) => n.state !== 'ok');
        if (missing.length) log('warning', { event: 'partial_answer', tool: name, missing });
        log('debug', { event: 'tool_call', tool: name, ms });
      }
      return result;
    } catch (err) {
      if (err instanceof UnknownToolError) {
        throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${err.tool}. Available: ${options.registry.list().map((t) => t.name).join(', ')}`);
      }
      throw err;
    }
  });
  return server;
}
