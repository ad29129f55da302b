import { LIMITS } from './limits';
import { parseType, typeName, type Type } from './types';

/**
 * The field catalogue: every variable a KFL filter can name, with its type and a one-line
 * description. It is the single source for the type checker, for the record shape the worker
 * fills (`KflRecord` in record.ts follows these paths; a test keeps the two equal) and for the
 * KFL2 reference MCP serves (`renderReference`).
 *
 * Names are Kubeshark's KFL2 names where KFL2 has the variable (`kfl2: true`); the others are
 * the names this project's dissectors and flow model emit (`kfl2: false`).
 */

export interface FieldDef {
  /** Dotted path, e.g. `src.pod.name`; the record nests objects along it. */
  name: string;
  /** Type notation: `string`, `int`, `list<string>`, `map<string, string>`, ... */
  type: string;
  description: string;
  group: FieldGroup;
  /** The name and type are KFL2's. */
  kfl2: boolean;
}

export const FIELD_GROUPS = ['protocol', 'network', 'kubernetes', 'entry', 'http', 'dns', 'grpc', 'redis', 'kafka', 'amqp', 'sql', 'mongodb', 'websocket', 'flow'] as const;
export type FieldGroup = (typeof FIELD_GROUPS)[number];

const GROUP_TITLES: Record<FieldGroup, string> = {
  protocol: 'Protocol flags',
  network: 'Network',
  kubernetes: 'Kubernetes identity',
  entry: 'Entry identity and timing',
  http: 'HTTP (also set for gRPC)',
  dns: 'DNS',
  grpc: 'gRPC',
  redis: 'Redis',
  kafka: 'Kafka',
  amqp: 'AMQP',
  sql: 'PostgreSQL and MySQL',
  mongodb: 'MongoDB',
  websocket: 'WebSocket',
  flow: 'L4 flows',
};

type Row = [name: string, type: string, description: string, kfl2?: boolean];

function rows(group: FieldGroup, list: Row[]): FieldDef[] {
  return list.map(([name, type, description, kfl2 = true]) => ({ name, type, description, group, kfl2 }));
}

const PROTOCOLS: Row[] = [
  ['http', 'bool', 'An HTTP/1.x or HTTP/2 API call (gRPC calls too)'],
  ['grpc', 'bool', 'A gRPC call (HTTP/2 with application/grpc)'],
  ['dns', 'bool', 'A DNS query and its answer'],
  ['redis', 'bool', 'A Redis command and its reply'],
  ['kafka', 'bool', 'A Kafka request and its response'],
  ['amqp', 'bool', 'An AMQP method'],
  ['postgresql', 'bool', 'A PostgreSQL query'],
  ['mysql', 'bool', 'A MySQL command'],
  ['mongodb', 'bool', 'A MongoDB operation'],
  ['ws', 'bool', 'A WebSocket message'],
  ['tcp', 'bool', 'Carried over TCP (API calls and TCP flows)'],
  ['udp', 'bool', 'Carried over UDP (API calls and UDP flows)'],
  ['tls', 'bool', 'The payload was decrypted from TLS'],
  ['flow', 'bool', 'An L4 flow record rather than an API call'],
  ['tcp_flow', 'bool', 'A TCP flow record'],
  ['udp_flow', 'bool', 'A UDP flow record'],
];

const NETWORK: Row[] = [
  ['src.ip', 'string', 'Client (source) IP address'],
  ['src.port', 'int', 'Client (source) port'],
  ['dst.ip', 'string', 'Server (destination) IP address'],
  ['dst.port', 'int', 'Server (destination) port'],
  ['protocol', 'string', 'Detected protocol, upper case: "HTTP", "DNS", "GRPC", "TCP", "UDP", ...'],
];

const side = (s: 'src' | 'dst', who: string): Row[] => [
  [`${s}.pod.name`, 'string', `${who} pod name`],
  [`${s}.pod.namespace`, 'string', `${who} pod namespace (falls back to the service's)`],
  [`${s}.service.name`, 'string', `${who} service name`],
  [`${s}.service.namespace`, 'string', `${who} service namespace`],
  [`${s}.name`, 'string', `${who} summary name: pod, else service, else DNS name`],
  [`${s}.namespace`, 'string', `${who} namespace, pod's else service's`],
  [`${s}.node.name`, 'string', `Node the ${who.toLowerCase()} pod runs on`, false],
  [`${s}.dns`, 'string', `DNS name resolved for the ${who.toLowerCase()} IP`],
];

const KUBERNETES: Row[] = [
  ...side('src', 'Source'),
  ...side('dst', 'Destination'),
  ['namespaces', 'list<string>', 'Namespaces of both sides (pod and service), without duplicates'],
  ['pods', 'list<string>', 'Pod names of both sides'],
  ['services', 'list<string>', 'Service names of both sides'],
  ['node_name', 'string', 'Node whose worker captured the entry'],
  ['node_ip', 'string', 'IP of that node'],
  ['local_labels', 'map<string, string>', 'Kubernetes labels of the local peer (the client, src)'],
  ['remote_labels', 'map<string, string>', 'Kubernetes labels of the remote peer (the server, dst)'],
  ['local_annotations', 'map<string, string>', 'Kubernetes annotations of the local peer'],
  ['remote_annotations', 'map<string, string>', 'Kubernetes annotations of the remote peer'],
  ['local_node_name', 'string', 'Node of the local peer'],
  ['remote_node_name', 'string', 'Node of the remote peer'],
];

const ENTRY: Row[] = [
  ['id', 'string', 'Entry id, "<node>/<flow>/<index>" (KFL2 has an int id; ids here are strings)', false],
  ['flow_id', 'string', 'Id of the L4 flow the entry was carried on, "<node>/<flow>"', false],
  ['index', 'int', 'Position of the entry within its connection, from 0'],
  ['worker', 'string', 'Worker that captured the entry'],
  ['timestamp', 'timestamp', 'Request time (flows: first seen); compare with timestamp("...") or now()'],
  ['elapsed_time', 'int', 'Response time minus request time, microseconds (0 without a response)'],
  ['failure', 'string', 'The protocol\'s own failure text ("HTTP 503 Service Unavailable", "NXDOMAIN", "ERR ..."); "" on success', false],
  ['error', 'string', 'Why the entry is incomplete: "pair-not-found", "timeout", "dissection"; "" when complete', false],
];

const HTTP: Row[] = [
  ['method', 'string', 'HTTP method ("GET", "POST", ...); the operation of other protocols'],
  ['path', 'string', 'URL path without the query string'],
  ['url', 'string', 'Path and query string as requested'],
  ['status_code', 'int', 'HTTP status; DNS rcode; 0 without a response'],
  ['status_text', 'string', 'HTTP reason phrase', false],
  ['http_version', 'string', 'HTTP version: "HTTP/1.1", "HTTP/2"'],
  ['query_string', 'map<string, string>', 'Query parameters, decoded (first value of each name)'],
  ['request.headers', 'map<string, string>', 'Request headers, names lower-cased, repeated headers joined with ", "'],
  ['response.headers', 'map<string, string>', 'Response headers, names lower-cased, repeated headers joined with ", "'],
  ['request.body', 'string', 'Request body as text (decoded, at most the stored size; "" when binary)', false],
  ['response.body', 'string', 'Response body as text (decoded, at most the stored size; "" when binary)', false],
  ['request_headers_size', 'int', 'Request header bytes'],
  ['response_headers_size', 'int', 'Response header bytes'],
  ['request_body_size', 'int', 'Request body bytes on the wire'],
  ['response_body_size', 'int', 'Response body bytes on the wire'],
];

const DNS: Row[] = [
  ['dns_questions', 'list<string>', 'Names asked'],
  ['dns_answers', 'list<string>', 'Answer data (addresses, names)'],
  ['dns_question_types', 'list<string>', 'Record types asked: "A", "AAAA", "CNAME", ...'],
  ['dns_request', 'bool', 'The query was seen'],
  ['dns_response', 'bool', 'The answer was seen'],
  ['dns_request_length', 'int', 'Query size, bytes'],
  ['dns_response_length', 'int', 'Answer size, bytes'],
];

const GRPC: Row[] = [
  ['grpc_method', 'string', 'Method name ("SayHello" from /helloworld.Greeter/SayHello)'],
  ['grpc_service', 'string', 'Service name ("helloworld.Greeter")', false],
  ['grpc_status', 'int', 'grpc-status of the trailers (0 = OK); -1 when absent'],
];

const REDIS: Row[] = [
  ['redis_type', 'string', 'Command verb: "GET", "SET", "HGET", ...'],
  ['redis_command', 'string', 'The command line ("GET session:1234")'],
  ['redis_key', 'string', 'The first key of the command'],
];

const KAFKA: Row[] = [
  ['kafka_api_key', 'int', 'API key number (0 = Produce, 1 = Fetch, ...)'],
  ['kafka_api_key_name', 'string', 'API name, upper case: "PRODUCE", "FETCH", "METADATA", ...'],
  ['kafka_client_id', 'string', 'Client id of the request'],
  ['kafka_request_summary', 'string', 'Request summary (topics named)'],
  ['kafka_topics', 'list<string>', 'Topics the request names', false],
];

const AMQP: Row[] = [
  ['amqp_method', 'string', 'Method: "basic.publish", "queue.declare", ...'],
  ['amqp_summary', 'string', 'Operation summary'],
  ['amqp_exchange', 'string', 'Exchange of a publish or bind', false],
  ['amqp_routing_key', 'string', 'Routing key of a publish or bind', false],
];

const SQL: Row[] = [
  ['postgresql_command', 'string', 'Command tag: "SELECT", "INSERT", ...'],
  ['postgresql_query', 'string', 'SQL text of the query'],
  ['postgresql_database', 'string', 'Database of the session'],
  ['postgresql_user', 'string', 'User of the session'],
  ['postgresql_success', 'bool', 'The server answered without an ErrorResponse'],
  ['postgresql_error_code', 'string', 'SQLSTATE of the error ("42P01"); a string, not an int'],
  ['mysql_command', 'string', 'Command: "COM_QUERY", "COM_STMT_PREPARE", ...'],
  ['mysql_query', 'string', 'SQL text of the query'],
  ['mysql_database', 'string', 'Database of the session'],
  ['mysql_success', 'bool', 'The server answered OK'],
  ['mysql_error_code', 'int', 'MySQL error number'],
];

const MONGODB: Row[] = [
  ['mongodb_command', 'string', 'Command: "find", "insert", "update", ...'],
  ['mongodb_database', 'string', 'Database'],
  ['mongodb_collection', 'string', 'Collection'],
  ['mongodb_success', 'bool', 'The reply has ok: 1'],
];

const WEBSOCKET: Row[] = [['ws_opcode', 'string', 'Frame type: "text", "binary", "close", "ping", "pong"']];

const FLOW: Row[] = [
  ['flow_state', 'string', 'Flow state: "open", "in_progress", "closed"'],
  ['flow_local_pkts', 'int', 'Packets sent by the local peer (the client)'],
  ['flow_local_bytes', 'int', 'Bytes sent by the local peer'],
  ['flow_remote_pkts', 'int', 'Packets sent by the remote peer (the server)'],
  ['flow_remote_bytes', 'int', 'Bytes sent by the remote peer'],
  ['flow_local_pps', 'int', 'Local peer packets per second, first to last seen'],
  ['flow_local_bps', 'int', 'Local peer bytes per second (bytes, not bits, as in KFL2)'],
  ['flow_remote_pps', 'int', 'Remote peer packets per second'],
  ['flow_remote_bps', 'int', 'Remote peer bytes per second'],
  ['flow_duration', 'int', 'Last seen minus first seen, microseconds', false],
  ['tcp_handshake_client_us', 'int', 'TCP handshake seen from the client: SYN to SYN-ACK, microseconds (0 unknown)', false],
  ['tcp_handshake_server_us', 'int', 'TCP handshake seen from the server: SYN to ACK (Wireshark initial_rtt), microseconds', false],
  ['tcp_retransmissions', 'int', 'Retransmitted segments, both directions', false],
  ['tcp_rst_count', 'int', 'RST segments seen', false],
];

/** Every field, in reference order. */
export const FIELDS: readonly FieldDef[] = Object.freeze([
  ...rows('protocol', PROTOCOLS),
  ...rows('network', NETWORK),
  ...rows('kubernetes', KUBERNETES),
  ...rows('entry', ENTRY),
  ...rows('http', HTTP),
  ...rows('dns', DNS),
  ...rows('grpc', GRPC),
  ...rows('redis', REDIS),
  ...rows('kafka', KAFKA),
  ...rows('amqp', AMQP),
  ...rows('sql', SQL),
  ...rows('mongodb', MONGODB),
  ...rows('websocket', WEBSOCKET),
  ...rows('flow', FLOW),
]);

export interface ResolvedField extends FieldDef {
  t: Type;
  /** `name` split on dots: the property path in a record. */
  path: readonly string[];
}

const BY_NAME = new Map<string, ResolvedField>(FIELDS.map((f) => [f.name, { ...f, t: parseType(f.type), path: f.name.split('.') }]));

/** Every proper prefix of a dotted name (`src`, `src.pod`): objects, not fields. */
const PREFIXES = new Set<string>();
for (const f of FIELDS) {
  const parts = f.name.split('.');
  for (let i = 1; i < parts.length; i++) PREFIXES.add(parts.slice(0, i).join('.'));
}

export function field(name: string): ResolvedField | undefined {
  return BY_NAME.get(name);
}

export function isFieldPrefix(name: string): boolean {
  return PREFIXES.has(name);
}

/**
 * Names that Kubeshark's older documentation and MCP examples still use. A filter using one
 * compiles with a note naming the KFL2 form, and its normalized text uses that form.
 */
export interface AliasDef {
  name: string;
  /** The KFL2 expression the alias stands for. */
  replacement: string;
  note: string;
}

export const ALIASES: readonly AliasDef[] = Object.freeze([
  { name: 'response.status', replacement: 'status_code', note: '"response.status" is the legacy name of "status_code"' },
  { name: 'request.path', replacement: 'path', note: '"request.path" is the legacy name of "path"' },
  { name: 'request.method', replacement: 'method', note: '"request.method" is the legacy name of "method"' },
  { name: 'request.url', replacement: 'url', note: '"request.url" is the legacy name of "url"' },
  { name: 'src.ns', replacement: 'src.namespace', note: '"src.ns" is the legacy name of "src.namespace"' },
  { name: 'dst.ns', replacement: 'dst.namespace', note: '"dst.ns" is the legacy name of "dst.namespace"' },
  {
    name: 'response.latency',
    replacement: 'double(elapsed_time) / 1000.0',
    note: '"response.latency" (milliseconds) is legacy: KFL2 has "elapsed_time" in microseconds; it was read as double(elapsed_time) / 1000.0',
  },
]);

const ALIAS_BY_NAME = new Map(ALIASES.map((a) => [a.name, a]));
export function alias(name: string): AliasDef | undefined {
  return ALIAS_BY_NAME.get(name);
}

/** The builtin functions and macros, for suggestions and the reference. */
export const FUNCTIONS: readonly { name: string; signature: string; description: string }[] = Object.freeze([
  { name: 'contains', signature: 'string.contains(string) -> bool', description: 'Substring test' },
  { name: 'startsWith', signature: 'string.startsWith(string) -> bool', description: 'Prefix test' },
  { name: 'endsWith', signature: 'string.endsWith(string) -> bool', description: 'Suffix test' },
  { name: 'matches', signature: 'string.matches(string) -> bool', description: 'RE2 regular expression search (unanchored); backreferences and lookaround are refused' },
  { name: 'size', signature: 'size(string | bytes | list | map) -> int', description: 'Length: characters, bytes, elements or keys (also as a method)' },
  { name: 'map_get', signature: 'map_get(map<K, V>, K, V) -> V', description: 'Value of a key, or the default when the key is absent' },
  { name: 'timestamp', signature: 'timestamp(string) -> timestamp', description: 'An RFC 3339 time ("2026-03-14T22:00:00Z"); timestamp(int) takes Unix seconds' },
  { name: 'duration', signature: 'duration(string) -> duration', description: 'A Go duration: "300ms", "5m", "1h30m", "1.5s"; units ns, us, ms, s, m, h' },
  { name: 'now', signature: 'now() -> timestamp', description: 'The time the filter was compiled (fixed for the whole query)' },
  { name: 'int', signature: 'int(int | uint | double | string | timestamp | duration) -> int', description: 'Conversion; timestamps give Unix seconds, durations nanoseconds (as in CEL)' },
  { name: 'uint', signature: 'uint(int | double | string) -> uint', description: 'Conversion' },
  { name: 'double', signature: 'double(int | uint | string) -> double', description: 'Conversion' },
  { name: 'string', signature: 'string(any scalar) -> string', description: 'Conversion; timestamps give RFC 3339, durations seconds ("1.5s")' },
  { name: 'has', signature: 'has(a.b) -> bool', description: 'The record has the field (it was set), or the map has the key' },
  { name: 'exists', signature: 'list.exists(x, pred) -> bool', description: 'Some element satisfies pred (maps: some key)' },
  { name: 'all', signature: 'list.all(x, pred) -> bool', description: 'Every element satisfies pred' },
  { name: 'exists_one', signature: 'list.exists_one(x, pred) -> bool', description: 'Exactly one element satisfies pred' },
  { name: 'map', signature: 'list.map(x, expr) -> list', description: 'Each element transformed; list.map(x, pred, expr) keeps only those satisfying pred' },
  { name: 'filter', signature: 'list.filter(x, pred) -> list', description: 'Elements satisfying pred' },
]);

/**
 * The KFL2 reference as markdown: syntax, functions, every field, aliases, limits. Generated
 * from the catalogue so it cannot drift from what the checker accepts.
 */
export function renderReference(): string {
  const out: string[] = [];
  out.push('# KFL2 filter reference', '');
  out.push(
    'KFL2 is Google\'s Common Expression Language (CEL) evaluated over each API call or L4 flow. A filter is a boolean expression; an empty filter matches everything. A field the record lacks reads as the zero value of its type: `""`, `0`, `false`, `[]`, `{}`.',
    '',
    '## Syntax',
    '',
    '| Category | Operators |',
    '|---|---|',
    '| Comparison | `==` `!=` `<` `<=` `>` `>=` (int, uint and double compare with each other) |',
    '| Logical | `&&` `\\|\\|` `!` (errors are absorbed where the other side decides, as in CEL) |',
    '| Arithmetic | `+` `-` `*` `/` `%` (same numeric type on both sides; `+` also joins strings and lists; timestamps and durations add and subtract) |',
    '| Membership | `x in list`, `key in map` |',
    '| Conditional | `c ? a : b` |',
    '',
    'Literals: `42`, `42u`, `0x2a`, `4.2`, `"text"`, `\'text\'`, `"""multi-line"""`, `r"raw \\d"`, `b"bytes"`, `true`, `false`, `null`, `[1, 2]`, `{"k": "v"}`. Escapes: `\\n \\t \\\\ \\" \\xHH \\uHHHH \\UHHHHHHHH \\ooo`. Comments run from `//` to the end of the line.',
    '',
    'Map access: `m["key"]` (an error when the key is absent: the record then does not match), `map_get(m, "key", default)`, `"key" in m`.',
    '',
    '## Functions and macros',
    '',
    '| Function | Description |',
    '|---|---|',
  );
  for (const f of FUNCTIONS) out.push(`| \`${f.signature.replace(/\|/g, '\\|')}\` | ${f.description} |`);
  out.push('', '## Fields', '', 'Names marked * are this deployment\'s additions to KFL2.', '');
  for (const g of FIELD_GROUPS) {
    out.push(`### ${GROUP_TITLES[g]}`, '', '| Field | Type | Description |', '|---|---|---|');
    for (const f of FIELDS.filter((x) => x.group === g)) out.push(`| \`${f.name}\`${f.kfl2 ? '' : ' *'} | ${typeName(parseType(f.type))} | ${f.description.replace(/\|/g, '\\|')} |`);
    out.push('');
  }
  out.push('## Legacy names', '', 'Accepted, with a note; the normalized filter uses the KFL2 form.', '', '| Legacy | KFL2 |', '|---|---|');
  for (const a of ALIASES) out.push(`| \`${a.name}\` | \`${a.replacement}\` |`);
  out.push(
    '',
    '## Limits',
    '',
    `A filter is at most ${LIMITS.maxLength} characters, ${LIMITS.maxNodes} syntax nodes and ${LIMITS.maxDepth} levels deep; regular expressions are at most ${LIMITS.maxRegexLength} characters and may not nest unbounded repetition (JavaScript runs them, and it backtracks). Macros may iterate at most ${LIMITS.maxIterations} times per record; beyond that the record does not match. Integers are exact up to 2^53.`,
    '',
    '## Examples',
    '',
    '```',
    'http && method == "GET" && status_code >= 400',
    'dst.pod.namespace == "production"',
    'dns && "google.com" in dns_questions',
    'grpc && grpc_status != 0',
    'http && elapsed_time > 5000000            // slower than 5 s',
    'timestamp > now() - duration("5m")',
    'http && request.headers["content-type"] == "application/json"',
    'map_get(local_labels, "app", "") == "checkout" && "production" in namespaces',
    'tcp_flow && flow_local_bps > 5000000',
    '```',
    '',
  );
  return out.join('\n');
}
