import { decodeCursor, encodeCursor, invalidCursor } from '../cursor';
import { isoMicros } from '../model';
import { resultChars, type ToolDefinition, type ToolOutput } from '../registry';
import { API_PROTOCOLS, type ApiCall, type ApiCallQuery, type ApiProtocol, type Endpoint } from '../traffic-source';
import { QUERY_TO_ARGUMENT, fitRows, inArgumentTerms, nodesLine, timeWindow, type TimeArgs } from './common';
import { cursorArg, endpointSchema, filterSchema, kflArg, limitArg, nodesSchema, pagingFields, timeArg } from './schemas';

/** An endpoint with the Kubernetes identity fields the source filled in (empty ones left out). */
function endpointView(e: Endpoint): Endpoint {
  const out: Endpoint = { ip: e.ip, port: e.port };
  for (const k of ['name', 'namespace', 'pod', 'service', 'node', 'unresolved'] as const) if (e[k]) out[k] = e[k];
  return out;
}

/** An API call as list_api_calls returns it. */
export interface ApiCallView {
  id: string;
  /** The node whose worker captured the call. */
  node: string;
  timestamp: string;
  protocol: string;
  src: Endpoint;
  dst: Endpoint;
  method: string;
  path: string;
  url: string;
  status_code: number;
  elapsed_time_us: number;
  error?: string;
  failure?: string;
  flow_id: string;
  /** format=full: the messages, bodies cut to FULL_BODY_CHARS. */
  request?: unknown;
  response?: unknown;
}

/** Body characters per message in format=full rows (get_api_call gives more). */
export const FULL_BODY_CHARS = 512;

export function apiCallView(c: ApiCall): ApiCallView {
  return {
    id: c.id,
    node: c.node,
    timestamp: isoMicros(c.timestamp_us),
    protocol: c.protocol,
    src: endpointView(c.src),
    dst: endpointView(c.dst),
    method: c.method,
    path: c.path,
    url: c.url,
    status_code: c.status_code,
    elapsed_time_us: c.elapsed_time_us,
    ...(c.error ? { error: c.error } : {}),
    ...(c.failure ? { failure: c.failure } : {}),
    flow_id: c.flow_id,
  };
}

const who = (e: Endpoint): string => (e.name ? `${e.namespace ? `${e.namespace}/` : ''}${e.name}(${e.ip}:${e.port})` : `${e.ip}:${e.port}`);
const callLine = (c: ApiCallView): string =>
  `${c.timestamp} ${c.protocol} ${who(c.src)} -> ${who(c.dst)} ${c.method} ${c.url || c.path} -> ${c.status_code}` +
  ` in ${c.elapsed_time_us} us${c.failure ? ` [failed: ${c.failure}]` : ''}${c.error ? ` [error: ${c.error}]` : ''} (id ${c.id})`;


const apiCallSchema = {
  type: 'object',
  properties: {
    id: { type: 'string', description: 'Pass to get_api_call for the full record.' },
    node: { type: 'string', description: 'The node whose worker captured it (a call between two nodes is seen by both).' },
    timestamp: { type: 'string', description: 'Request time, RFC 3339 with microseconds.' },
    protocol: { type: 'string' },
    src: endpointSchema,
    dst: endpointSchema,
    method: { type: 'string', description: 'HTTP method, or the DNS opcode.' },
    path: { type: 'string', description: 'HTTP request target, or the DNS query name.' },
    url: { type: 'string' },
    status_code: { type: 'integer', description: 'HTTP status, or the DNS rcode; 0 when there was no response.' },
    elapsed_time_us: { type: 'number', description: 'Request to response, microseconds.' },
    error: { type: 'string', description: 'Why the record is incomplete: pair-not-found (no response captured), timeout, dissection (bytes missing).' },
    failure: { type: 'string', description: "The protocol's own account of a failure: HTTP 503 Service Unavailable, NXDOMAIN, grpc-status 14 UNAVAILABLE, SQLSTATE 42P01: ..." },
    flow_id: { type: 'string', description: 'The L4 flow (as list_l4_flows and export_pcap name it).' },
    request: { type: ['object', 'null'], description: `format=full: headers, body preview (first ${FULL_BODY_CHARS} characters), sizes.` },
    response: { type: ['object', 'null'], description: 'format=full: as request.' },
  },
  required: ['id', 'node', 'timestamp', 'protocol', 'src', 'dst', 'method', 'path', 'url', 'status_code', 'elapsed_time_us', 'flow_id'],
  additionalProperties: false,
};

interface ListApiCallsArgs extends TimeArgs {
  protocol?: ApiProtocol;
  kfl?: string;
  format: 'compact' | 'full';
  limit: number;
  cursor?: string;
}

/** What a list_api_calls cursor carries: the filters and the source cursor to continue after. */
type PagedApiQuery = Omit<ApiCallQuery, 'limit'> & { after: string };

const isMicros = (x: unknown): boolean => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;

function checkPagedQuery(q: unknown): PagedApiQuery | undefined {
  if (typeof q !== 'object' || q === null || Array.isArray(q)) return undefined;
  const o = q as Record<string, unknown>;
  const known = new Set(['protocol', 'since_us', 'until_us', 'after', 'kfl']);
  if (Object.keys(o).some((k) => !known.has(k))) return undefined;
  if (typeof o.after !== 'string' || o.after.length === 0) return undefined;
  if (o.protocol !== undefined && !API_PROTOCOLS.includes(o.protocol as ApiProtocol)) return undefined;
  if (o.kfl !== undefined && typeof o.kfl !== 'string') return undefined;
  if ((o.since_us !== undefined && !isMicros(o.since_us)) || (o.until_us !== undefined && !isMicros(o.until_us))) return undefined;
  return o as unknown as PagedApiQuery;
}

function filtersOf(args: ListApiCallsArgs, kfl: string): Omit<ApiCallQuery, 'limit' | 'after'> {
  return { ...(args.protocol ? { protocol: args.protocol } : {}), ...timeWindow(args), ...(kfl ? { kfl } : {}) };
}

/** The query and how many calls earlier pages returned; filters given with a cursor must agree with it. */
function resolvePage(args: ListApiCallsArgs, kfl: string): { query: Omit<ApiCallQuery, 'limit'>; offset: number } {
  if (args.cursor === undefined) return { query: filtersOf(args, kfl), offset: 0 };
  const { query, offset } = decodeCursor(listApiCalls.name, args.cursor, checkPagedQuery);
  const given = filtersOf(args, args.kfl !== undefined ? kfl : '');
  const conflicts: string[] = [];
  for (const [field, arg] of [
    ['protocol', 'protocol'],
    ['since_us', 'start'],
    ['until_us', 'end'],
    ['kfl', 'kfl'],
  ] as const) {
    if (given[field] !== undefined && given[field] !== query[field]) conflicts.push(arg);
  }
  if (conflicts.length > 0) {
    throw invalidCursor(`it was issued for other arguments (${conflicts.map((c) => `"${c}"`).join(', ')} differ); pass the same arguments as the first call, or only cursor and limit`);
  }
  return { query, offset };
}

export const listApiCalls: ToolDefinition<ListApiCallsArgs> = {
  name: 'list_api_calls',
  title: 'List API calls',
  description:
    'API calls (L7 entries) seen on the network, in timestamp order: HTTP/1.x and HTTP/2 requests with their responses, gRPC calls, DNS queries, ' +
    'Redis commands, PostgreSQL queries, Kafka and AMQP requests. Each has its endpoints, method (HTTP method, DNS opcode, Redis command, SQL verb, ' +
    'Kafka API key, AMQP method), path and url (HTTP target, DNS name, key, topic, ...), status_code (HTTP status, DNS rcode, ...), elapsed time, ' +
    'failure (the protocol\'s own error) and the L4 flow it travelled on. Filter with kfl (KFL2, e.g. http && status_code >= 500), protocol and a start/end window; ' +
    'filters run on the workers, so pages stay complete and in order. ' +
    'Use get_api_call with an id for headers and bodies. Results are paged: when nextCursor is present, call again with cursor=nextCursor (same arguments).',
  inputSchema: {
    type: 'object',
    properties: {
      start: timeArg('Only calls made at or after this time'),
      end: timeArg('Only calls made at or before this time'),
      kfl: kflArg('API calls', 'http && status_code >= 500, dns && "example.com" in dns_questions, redis && redis_key.startsWith("session:")'),
      protocol: { type: 'string', enum: [...API_PROTOCOLS], description: 'Only calls of this protocol (same as the KFL flag of that name).' },
      format: {
        type: 'string',
        enum: ['compact', 'full'],
        default: 'compact',
        description: `compact (default): one line per call; full: also the request and response headers and body previews (${FULL_BODY_CHARS} characters), so fewer calls fit a page.`,
      },
      limit: limitArg(100, 1000, 'calls per page'),
      cursor: cursorArg,
    },
    additionalProperties: false,
  },
  outputSchema: {
    type: 'object',
    properties: {
      calls: { type: 'array', items: apiCallSchema },
      total: { type: 'integer', minimum: 0, description: 'Matching calls over all pages, when known.' },
      filter: filterSchema,
      ...pagingFields,
      nodes: nodesSchema,
    },
    required: ['calls', 'returned', 'truncated', 'nodes'],
    additionalProperties: false,
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
  async handler(args, ctx) {
    const filter = ctx.filters.compose(args.kfl);
    const { query, offset } = resolvePage(args, filter.text);
    const full = args.format === 'full';
    const result = await inArgumentTerms(
      ctx.source.listApiCalls!({ ...query, limit: args.limit, ...(full ? { full: true } : {}) }, { signal: ctx.signal }),
      { ...QUERY_TO_ARGUMENT, protocol: 'protocol', after: 'cursor' },
    );
    const shownFilter = args.kfl !== undefined ? { filter: { normalized: filter.normalized, notes: filter.notes } } : {};
    const calls = result.calls.slice(0, args.limit);
    const rows = calls.map((c) => (full ? { ...apiCallView(c), ...fullMessages(c) } : apiCallView(c)));
    const lines = rows.map((r) => (full ? `${callLine(r)}\n${[...headerLines('  request', r.request), ...headerLines('  response', r.response)].join('\n')}` : callLine(r)));
    const filters = {
      ...(query.protocol ? { protocol: query.protocol } : {}),
      ...(query.since_us !== undefined ? { since_us: query.since_us } : {}),
      ...(query.until_us !== undefined ? { until_us: query.until_us } : {}),
      ...(query.kfl ? { kfl: query.kfl } : {}),
    };

    /** The page cut to its first `n` calls; `cut` says the output budget (not the limit) did it. */
    const render = (n: number, cut: boolean): ToolOutput => {
      const more = n < calls.length || result.more;
      const after = calls[n - 1]?.cursor;
      const nextCursor = more && after ? encodeCursor(listApiCalls.name, { ...filters, after }, offset + n) : undefined;
      const hint = cut
        ? `Cut to ${n} calls to fit the output budget (~${ctx.budget.maxTokens} tokens): narrow with kfl, protocol or a shorter start/end window, get_api_stats for totals, or page on with cursor.`
        : undefined;
      const from = offset > 0 ? ` from #${offset + 1}` : '';
      const of = result.total !== undefined ? ` of ${result.total}` : '';
      const header = `${n}${of} API calls${from}${more ? ' (more match)' : ''} (nodes: ${nodesLine(result.nodes)})`;
      const notes = args.kfl !== undefined ? filter.notes.map((note) => `Note: ${note}`) : [];
      const tail = [...notes, ...(hint ? [hint] : []), ...(nextCursor ? [`Next page: call list_api_calls with cursor "${nextCursor}".`] : [])];
      return {
        structured: {
          calls: rows.slice(0, n),
          ...(result.total !== undefined ? { total: result.total } : {}),
          ...shownFilter,
          returned: n,
          truncated: more,
          ...(nextCursor ? { nextCursor } : {}),
          ...(hint ? { hint } : {}),
          nodes: result.nodes,
        },
        text: [header, ...lines.slice(0, n), ...tail].join('\n'),
      };
    };

    return fitRows(rows, lines, ctx.budget, render);
  },
};

/** The messages of a call for format=full, bodies cut to FULL_BODY_CHARS (null when the source gave none). */
function fullMessages(c: ApiCall): { request: unknown; response: unknown } {
  const m = c.messages;
  if (!m) return { request: null, response: null };
  const cut = withBodyPreviews({ request: m.request, response: m.response }, FULL_BODY_CHARS);
  return { request: cut.request ?? null, response: cut.response ?? null };
}

/** Longest body text get_api_call returns per message. */
export const BODY_PREVIEW_CHARS = 2048;

/**
 * The record with each message's body cut to a preview, and its decoded gRPC messages (a
 * worker with a descriptor set) kept while their JSON fits in the same number of characters;
 * those left out are added to `grpc_messages_omitted`.
 */
function withBodyPreviews(call: Record<string, unknown>, chars: number): Record<string, unknown> {
  const out: Record<string, unknown> = { ...call };
  for (const k of ['request', 'response']) {
    const m = call[k];
    if (typeof m !== 'object' || m === null) continue;
    const msg = { ...(m as Record<string, unknown>) };
    if (typeof msg.body === 'string' && msg.body.length > chars) {
      msg.body = msg.body.slice(0, chars);
      msg.body_preview_truncated = true;
    }
    if (Array.isArray(msg.grpc_messages)) {
      let used = 0;
      const kept = [];
      for (const g of msg.grpc_messages as unknown[]) {
        used += JSON.stringify(g).length;
        if (used > chars) break;
        kept.push(g);
      }
      const dropped = msg.grpc_messages.length - kept.length;
      if (dropped > 0) {
        msg.grpc_messages = kept;
        msg.grpc_messages_omitted = (typeof msg.grpc_messages_omitted === 'number' ? msg.grpc_messages_omitted : 0) + dropped;
      }
    }
    out[k] = msg;
  }
  return out;
}

/** Decoded gRPC messages as text lines: one per message, its JSON or why it was not decoded. */
function grpcLines(msg: { grpc_messages?: unknown; grpc_message_type?: unknown; grpc_messages_omitted?: unknown }): string[] {
  if (!Array.isArray(msg.grpc_messages)) return [];
  const type = typeof msg.grpc_message_type === 'string' ? ` ${msg.grpc_message_type}` : '';
  const lines = (msg.grpc_messages as { json?: unknown; error?: unknown }[]).map((g, i) => `  grpc message ${i + 1}${type}: ${g.json !== undefined ? JSON.stringify(g.json) : `not decoded: ${String(g.error)}`}`);
  if (typeof msg.grpc_messages_omitted === 'number' && msg.grpc_messages_omitted > 0) lines.push(`  (${msg.grpc_messages_omitted} more gRPC messages not shown)`);
  return lines;
}

function headerLines(label: string, m: unknown): string[] {
  if (typeof m !== 'object' || m === null) return [`${label}: none`];
  const msg = m as { headers?: unknown; body_size?: unknown; body?: unknown; grpc_messages?: unknown; grpc_message_type?: unknown; grpc_messages_omitted?: unknown };
  const headers = Array.isArray(msg.headers)
    ? msg.headers.map((h) => (Array.isArray(h) ? `${String(h[0])}: ${String(h[1])}` : typeof h === 'object' && h !== null && 'name' in h ? `${String((h as { name: unknown }).name)}: ${String((h as { value?: unknown }).value)}` : JSON.stringify(h)))
    : typeof msg.headers === 'object' && msg.headers !== null
      ? Object.entries(msg.headers).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : String(v)}`)
      : [];
  return [
    `${label} (${String(msg.body_size ?? 0)} B body):`,
    ...headers.map((h) => `  ${h}`),
    ...(typeof msg.body === 'string' && msg.body.length > 0 ? [`  body: ${msg.body}`] : []),
    ...grpcLines(msg),
  ];
}

/** A request or response of get_api_call: only the decoded gRPC fields are described; the rest is the protocol's own. */
const grpcSideSchema = (side: string): object => ({
  type: ['object', 'null'],
  properties: {
    grpc_message_type: { type: 'string', description: `gRPC: the ${side} message type of the method in the descriptor set.` },
    grpc_messages: {
      type: 'array',
      description: 'gRPC with a descriptor set: each length-prefixed message in order, as proto3 JSON, or the reason it was not decoded.',
      items: {
        type: 'object',
        properties: {
          size: { type: 'integer', description: 'Message length in its prefix (compressed size when compressed).' },
          compressed: { type: 'boolean' },
          json: { description: 'The message in the proto3 JSON mapping (lowerCamelCase keys, int64 as strings, bytes base64, enums by name).' },
          error: { type: 'string', description: 'Why there is no json: method not in the descriptor set, truncated, not kept, does not decode, compression.' },
        },
      },
    },
    grpc_messages_omitted: { type: 'integer', description: 'Messages not listed (worker limit, or cut to fit the output budget).' },
  },
});

export const getApiCall: ToolDefinition<{ id: string; include_payload: boolean }> = {
  name: 'get_api_call',
  title: 'Get one API call',
  description:
    'The full record of one API call by the id list_api_calls gives: request and response headers, body previews (text, or base64 for binary; ' +
    `the first ${BODY_PREVIEW_CHARS} characters unless include_payload), sizes, the protocol's own fields (gRPC status and messages, DNS records, ` +
    'SQL text and errors, Redis replies, Kafka topics, ...), the endpoints with their Kubernetes identities, and the flow it rode on. ' +
    'For gRPC, when the worker has a descriptor set (--grpc-descriptor-set), request/response.grpc_messages hold each message as JSON ' +
    '(or the reason it could not be decoded: unknown method, truncated by the body limit, corrupt).',
  inputSchema: {
    type: 'object',
    properties: {
      id: { type: 'string', minLength: 1, maxLength: 512, description: 'An id from list_api_calls ("<node>/<flow>/<index>").' },
      include_payload: {
        type: 'boolean',
        default: false,
        description: `Return the bodies as stored by the worker (up to its body size limit) instead of ${BODY_PREVIEW_CHARS}-character previews; still cut to fit the output budget.`,
      },
    },
    required: ['id'],
    additionalProperties: false,
  },
  outputSchema: {
    type: 'object',
    properties: {
      call: {
        type: 'object',
        description: 'The full record: the list_api_calls fields plus protocol details (request/response headers and body previews, DNS records).',
        properties: {
          request: grpcSideSchema('request'),
          response: grpcSideSchema('response'),
        },
      },
      nodes: nodesSchema,
    },
    required: ['call', 'nodes'],
    additionalProperties: false,
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
  async handler(args, ctx) {
    const { call, nodes } = await inArgumentTerms(ctx.source.getApiCall!(args.id, { signal: ctx.signal }), {}, { not_found: 'id', invalid_argument: 'id' });
    const render = (chars: number): ToolOutput => {
      const c = withBodyPreviews(call, chars);
      const ts = typeof c.timestamp === 'number' ? isoMicros(c.timestamp) : String(c.timestamp ?? '');
      const src = c.src as { ip?: string; port?: number } | undefined;
      const dst = c.dst as { ip?: string; port?: number } | undefined;
      const lines = [
        `${String(c.protocol)} ${String(c.method)} ${String(c.url || c.path)} -> ${String(c.status_code)} at ${ts}, ${String(c.elapsed_time)} us, ` +
          `${src?.ip}:${src?.port} -> ${dst?.ip}:${dst?.port} (id ${String(c.id)}, flow ${String(c.flow_id)})`,
        ...(c.error ? [`error: ${String(c.error)}`] : []),
        ...headerLines('request', c.request),
        ...headerLines('response', c.response),
        `Nodes: ${nodesLine(nodes)}`,
      ];
      return { structured: { call: c, nodes }, text: lines.join('\n') };
    };
    let chars = args.include_payload ? Number.MAX_SAFE_INTEGER : BODY_PREVIEW_CHARS;
    let out = render(chars);
    if (args.include_payload && resultChars(out, ctx.budget) > ctx.budget.maxChars) chars = BODY_PREVIEW_CHARS * 8;
    while (chars > 0 && resultChars(out, ctx.budget) > ctx.budget.maxChars) out = render((chars = Math.floor(chars / 4)));
    return out;
  },
};
