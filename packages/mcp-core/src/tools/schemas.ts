import type { JsonSchema } from '../registry';

/** JSON Schema fragments shared by tool definitions. */

export const timeArg = (what: string): Record<string, unknown> => ({
  type: ['string', 'integer'],
  format: 'timestamp',
  minimum: 0,
  description: `${what}: an RFC 3339 time (2024-05-01T14:15:00Z) or Unix milliseconds.`,
});

export const limitArg = (def: number, max: number, what: string): Record<string, unknown> => ({
  type: 'integer',
  minimum: 1,
  maximum: max,
  default: def,
  description: `Maximum number of ${what} to return (default ${def}, at most ${max}).`,
});

const num = { type: 'number' };
const int = { type: 'integer', minimum: 0 };
const str = { type: 'string' };

export const endpointSchema = {
  type: 'object',
  properties: {
    ip: str,
    port: int,
    name: str,
    namespace: str,
    pod: str,
    service: str,
    node: str,
    unresolved: { type: 'string', description: 'Why the Kubernetes resolver could not name the address (not-in-cluster-map, no-pod-at-that-time, ...).' },
  },
  required: ['ip'],
  additionalProperties: false,
};

const tcpHealthSchema = {
  type: 'object',
  description:
    "Segments of this direction carrying each of tshark's tcp.analysis flags, the counters above zero only ({}: none was seen). " +
    'retransmissions includes fast and spurious ones; lost_segments and acked_unseen_segments usually mean the capture missed packets, not the network.',
  properties: {
    retransmissions: int,
    fast_retransmissions: int,
    spurious_retransmissions: int,
    out_of_order: int,
    duplicate_acks: int,
    zero_windows: int,
    keep_alives: int,
    window_full: int,
    lost_segments: int,
    acked_unseen_segments: int,
  },
  additionalProperties: false,
};

/** A rate over first -> last seen, present only for spans over 5 ms. */
const rate = (what: string): Record<string, unknown> => ({
  type: 'number',
  minimum: 0,
  description: `Average ${what} per second from first to last seen; absent when that span is 5 ms or less (too short for a rate).`,
});

export const ratedDirectionSchema = {
  type: 'object',
  properties: { packets: int, bytes: int, payload_bytes: int, pps: rate('packets'), bps: rate('bits'), tcp: tcpHealthSchema },
  required: ['packets', 'bytes', 'payload_bytes'],
  additionalProperties: false,
};

export const totalsSchema = {
  type: 'object',
  properties: { packets: int, bytes: int, pps: rate('packets'), bps: rate('bits') },
  required: ['packets', 'bytes'],
  additionalProperties: false,
};

const handshakePercentiles = {
  tcp_handshake_p50_us: num,
  tcp_handshake_p90_us: num,
  tcp_handshake_p99_us: num,
};

export const flowSchema = {
  type: 'object',
  properties: {
    id: str,
    node: str,
    protocol: { type: 'string', enum: ['tcp', 'udp'] },
    state: str,
    client: endpointSchema,
    server: endpointSchema,
    client_to_server: ratedDirectionSchema,
    server_to_client: ratedDirectionSchema,
    totals: totalsSchema,
    first_seen: str,
    last_seen: str,
    duration_ms: num,
    tcp_handshake_client_us: num,
    tcp_handshake_server_us: num,
    ...handshakePercentiles,
    syn_count: int,
    fin_count: int,
    rst_count: int,
    tcp_completeness: { type: 'integer', minimum: 0, maximum: 63, description: "Wireshark's tcp.completeness: SYN=1, SYN-ACK=2, ACK=4, DATA=8, FIN=16, RST=32." },
  },
  required: ['id', 'node', 'protocol', 'state', 'client', 'server', 'client_to_server', 'server_to_client', 'totals', 'first_seen', 'last_seen', 'duration_ms'],
  additionalProperties: false,
};

const partialEndpointSchema = { ...endpointSchema, required: [] };

export const flowGroupSchema = {
  type: 'object',
  properties: {
    key: str,
    client: partialEndpointSchema,
    server: partialEndpointSchema,
    flows: int,
    tcp_flows: int,
    udp_flows: int,
    client_to_server: ratedDirectionSchema,
    server_to_client: ratedDirectionSchema,
    totals: totalsSchema,
    first_seen: str,
    last_seen: str,
    tcp_handshakes: int,
    ...handshakePercentiles,
    tcp_handshake_client_p50_us: num,
    tcp_handshake_client_p90_us: num,
    tcp_handshake_client_p99_us: num,
  },
  required: ['key', 'client', 'server', 'flows', 'tcp_flows', 'udp_flows', 'client_to_server', 'server_to_client', 'totals', 'first_seen', 'last_seen', 'tcp_handshakes'],
  additionalProperties: false,
};

/**
 * Flow rows for a page of flows or groups, as `$defs` referenced with `$ref`. The rows inline
 * the same direction and TCP-health schemas four times over; inlined, a page's validator is
 * ~140 KB of generated code, past what V8 optimizes: the SDK client's Ajv (allErrors) took
 * ~90 us to check a page of 50 flows, ~17 us with these as separate functions.
 */
const DIRECTION_REF = { $ref: '#/$defs/direction' };
export const flowRowDefs = {
  tcp_health: tcpHealthSchema,
  direction: { ...ratedDirectionSchema, properties: { ...ratedDirectionSchema.properties, tcp: { $ref: '#/$defs/tcp_health' } } },
  flow: { ...flowSchema, properties: { ...flowSchema.properties, client_to_server: DIRECTION_REF, server_to_client: DIRECTION_REF } },
  flow_group: { ...flowGroupSchema, properties: { ...flowGroupSchema.properties, client_to_server: DIRECTION_REF, server_to_client: DIRECTION_REF } },
};

export const nodesSchema = {
  type: 'array',
  description: 'The nodes this answer covers, and any that were unavailable or failed.',
  items: {
    type: 'object',
    properties: {
      node: str,
      state: { type: 'string', enum: ['ok', 'unavailable', 'error'] },
      message: str,
    },
    required: ['node', 'state'],
    additionalProperties: false,
  },
};

const protocolTotalsSchema = {
  type: 'object',
  properties: { flows: int, packets: int, bytes: int },
  required: ['flows', 'packets', 'bytes'],
  additionalProperties: false,
};

const talkerSchema = {
  type: 'object',
  properties: { ip: str, tx_packets: int, rx_packets: int, tx_bytes: int, rx_bytes: int, flows: int },
  required: ['ip', 'tx_packets', 'rx_packets', 'tx_bytes', 'rx_bytes', 'flows'],
  additionalProperties: false,
};

export const summarySchema: JsonSchema = {
  type: 'object',
  properties: {
    total_flows: int,
    total_packets: int,
    total_bytes: int,
    tcp: protocolTotalsSchema,
    udp: protocolTotalsSchema,
    unique_clients: int,
    unique_servers: int,
    top_by_bytes: { type: 'array', items: talkerSchema },
    top_by_packets: { type: 'array', items: talkerSchema },
    by_namespace: {
      type: 'array',
      description: 'With Kubernetes identities: traffic per namespace ("" = addresses outside the cluster); a flow counts for each namespace of its ends.',
      items: { type: 'object', properties: { namespace: str, flows: int, packets: int, bytes: int }, required: ['namespace', 'flows', 'packets', 'bytes'], additionalProperties: false },
    },
    cross_namespace: {
      type: 'array',
      description: 'With Kubernetes identities: client -> server namespace pairs that differ, by bytes.',
      items: { type: 'object', properties: { src_namespace: str, dst_namespace: str, flows: int, bytes: int }, required: ['src_namespace', 'dst_namespace', 'flows', 'bytes'], additionalProperties: false },
    },
    tcp_handshakes: int,
    ...handshakePercentiles,
    tcp_handshake_band: { type: 'string', enum: ['excellent', 'good', 'elevated', 'high'] },
    first_seen: str,
    last_seen: str,
    truncated: { type: 'boolean', description: 'Present (true) when the top-talker lists were cut to fit the output budget.' },
    hint: { type: 'string', description: 'How to get the rest when the result was cut.' },
    nodes: nodesSchema,
  },
  required: ['total_flows', 'total_packets', 'total_bytes', 'tcp', 'udp', 'unique_clients', 'unique_servers', 'top_by_bytes', 'top_by_packets', 'tcp_handshakes', 'nodes'],
  additionalProperties: false,
};

/** The `cursor` argument of every paged tool. */
export const cursorArg = {
  type: 'string',
  minLength: 1,
  description: 'nextCursor from a previous result: returns the next page of the same query. Opaque; pass it unchanged.',
};

/** Output fields every paged tool returns alongside its rows. */
export const pagingFields = {
  returned: { type: 'integer', minimum: 0 },
  truncated: { type: 'boolean', description: 'True when more matched than this page returned (see nextCursor).' },
  nextCursor: { type: 'string', description: 'Pass as cursor to get the next page; absent on the last page.' },
  hint: { type: 'string', description: 'How to narrow the query when the result was cut.' },
};

/** A KFL2 filter argument; `what` names what it selects and `example` shows one. */
export const kflArg = (what: string, example: string): Record<string, unknown> => ({
  type: 'string',
  maxLength: 4096,
  description: `KFL2 filter (CEL) over ${what}, e.g. ${example}. Field names and functions: the kubeshark://kfl/reference resource, or apply_filter to try one.`,
});

/** What a tool says about the filter it applied. */
export const filterSchema = {
  type: 'object',
  description: 'The KFL filter as applied: normalized (legacy names and macros expanded) with notes on what was rewritten.',
  properties: { normalized: { type: 'string' }, notes: { type: 'array', items: { type: 'string' } } },
  required: ['normalized', 'notes'],
  additionalProperties: false,
};
