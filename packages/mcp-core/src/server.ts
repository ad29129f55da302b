import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  ErrorCode,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListToolsRequestSchema,
  McpError,
  type Implementation,
} from '@modelcontextprotocol/sdk/types.js';
import { PromptRegistry } from './prompts';
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
}

/** Shared by every server that is not given its own: prompts hold no state. */
const DEFAULT_PROMPTS = new PromptRegistry();

export const DEFAULT_INSTRUCTIONS =
  'Network truth for a Kubernetes cluster, from packets captured on every node. Start with get_l4_flow_summary ' +
  'for an overview, then list_l4_flows to drill into connections (filter by ip, port, protocol, time). Every answer ' +
  'lists the nodes it covers; a node marked unavailable means its traffic is missing, not absent. When an answer is ' +
  'empty, get_status and get_data_boundaries (where offered) tell whether that traffic was captured at all. Lists are ' +
  'paged: when a result has nextCursor, pass it back as cursor for the next page. The prompts network_health, ' +
  'debug_connection and show_topology give step-by-step plans for common investigations.';

/**
 * One MCP server (protocol endpoint) over the shared tool registry. The low-level SDK `Server`
 * is used rather than `McpServer` so tools keep plain JSON Schemas validated by ajv.
 */
export function createMcpServer(options: McpServerOptions): Server {
  const server = new Server(options.serverInfo, {
    capabilities: { tools: { listChanged: false }, prompts: { listChanged: false } },
    instructions: options.instructions ?? DEFAULT_INSTRUCTIONS,
  });
  const prompts = options.prompts ?? DEFAULT_PROMPTS;
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: options.registry.list() }));
  // A handful of prompts: one page, so a cursor is never issued.
  server.setRequestHandler(ListPromptsRequestSchema, () => ({ prompts: prompts.list() }));
  server.setRequestHandler(GetPromptRequestSchema, (request) => prompts.get(request.params.name, request.params.arguments ?? {}));
  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    try {
      const token = extra._meta?.progressToken;
      return await options.registry.call(request.params.name, request.params.arguments, {
        source: options.source,
        signal: extra.signal,
        ...(token !== undefined
          ? { progress: (update: ProgressUpdate) => extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, ...update } }) }
          : {}),
      });
    } catch (err) {
      if (err instanceof UnknownToolError) {
        throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${err.tool}. Available: ${options.registry.list().map((t) => t.name).join(', ')}`);
      }
      throw err;
    }
  });
  return server;
}
