import type { TcpChunk, TcpDirection, TcpEnd, TcpGap } from '@kubeshark-mcp/capture';
import type { Entry, EntryError, EntryMessage } from './entry';
import { HeldBytes } from './held';
import type { StreamOpen, TcpDissector, TcpProtocol, Verdict } from './stream';

/**
 * Kafka dissector: one `KafkaEntry` per request, paired with its response by correlation id.
 * Pure: no I/O, no timers; time is the capture time of the chunks.
 *
 * - Framing: every message is an INT32 size followed by that many bytes. Frames are streamed:
 *   at most `max(maxBodySize, 64 KiB)` bytes of a frame are kept (the body of the entry and
 *   the input of the field parser), the rest is counted and skipped, so a 2 GB size claim
 *   allocates nothing. A size above `maxFrameSize` (Kafka's `socket.request.max.bytes`,
 *   100 MiB by default) or below a header's is not a frame: the direction resyncs.
 * - Roles: the client's direction (from the handshake) sends requests. Joined mid-stream, the
 *   first complete frame of a direction is judged: a plausible request header (known API key,
 *   small version, a printable client id that fits) makes it the request side, anything else
 *   the response side, and the other direction takes the other role.
 * - Joined mid-stream, a direction's first byte starts a frame when the bytes say so: a
 *   plausible request header, a size followed by the correlation id of a waiting request, or
 *   size fields that chain over three frames (or exactly to the end of the direction). Until
 *   that is decided its bytes are held (at most 64 KiB), so the decision never depends on how
 *   the stream was cut into chunks; otherwise the direction resyncs.
 * - Requests: header v1/v2 (API key, version, correlation id, client id, tagged fields from
 *   the first flexible version; ControlledShutdown v0 uses header v0). Topics (and partitions)
 *   are read from Produce, Fetch and Metadata requests of every version, classic and flexible
 *   (compact) encodings; topic ids (Fetch v13+, Produce v13+) are shown as UUIDs.
 * - Responses pair by correlation id with the API key and version of their request, which
 *   say how to read them (response header v1 for flexible versions, except ApiVersions) and
 *   where the error code is: top-level for the APIs that have one first, the first topic's or
 *   partition's for Produce, Fetch and Metadata. Brokers answer in request order, so a
 *   response also ends the wait of the requests sent before its own (`pair-not-found`).
 *   Produce with acks=0 gets no response: it is emitted at once, complete.
 * - Entries come out when complete (a response arrives, the stream ends); their `index` is
 *   taken when the request (or a response without one) arrives, so indexes follow request order.
 * - Gaps: a gap inside a frame is skipped (the entry is flagged `dissection`, body
 *   `truncated`); past the frame, the direction resyncs at the next plausible header (a
 *   request header, or a size followed by a pending correlation id), scanning a bounded amount.
 */

/** A Kafka request/response pair in the shared vocabulary, plus the Kafka-specific details. */
export interface KafkaEntry extends Entry {
  protocol: 'kafka';
  /** The request's API key; -1 for a response whose request was not seen. */
  kafka_api_key: number;
  /** `PRODUCE`, `FETCH`, `METADATA`, `API_VERSIONS`, ...; '' when unknown. */
  kafka_api_key_name: string;
  /** -1 when unknown. */
  kafka_api_version: number;
  kafka_correlation_id: number;
  /** '' when null or absent. */
  kafka_client_id: string;
  /** Topics the request names, in order, without duplicates (Produce, Fetch, Metadata). */
  kafka_topics: string[];
  /** `PRODUCE orders[0,1]`, `METADATA *` (all topics), `API_VERSIONS`. */
  kafka_request_summary: string;
  /** Top-level error code of the response, else its first topic's or partition's; 0 without one. */
  kafka_error_code: number;
}

export interface KafkaDissectorOptions {
  /** Frame bytes kept as the entry body, per message. Default 64 KiB; 0 keeps none. */
  maxBodySize?: number;
  /** Largest frame size accepted; larger claims mean the stream is out of sync. Default 100 MiB. */
  maxFrameSize?: number;
}

export interface KafkaDissectorStats {
  entries: number;
  errors: Record<EntryError, number>;
  /** Streams in which at least one frame was read. */
  kafkaStreams: number;
  /** Frames whose header could not be read. */
  malformed: number;
  /** Times a direction looked for the next frame header, and the bytes it skipped. */
  resyncs: number;
  skippedBytes: number;
}

/** API key names, indexed by key (Kafka protocol guide, "Api Keys"). */
export const KAFKA_API_KEYS: readonly string[] = [
  'PRODUCE', 'FETCH', 'LIST_OFFSETS', 'METADATA', 'LEADER_AND_ISR', 'STOP_REPLICA', 'UPDATE_METADATA', 'CONTROLLED_SHUTDOWN',
  'OFFSET_COMMIT', 'OFFSET_FETCH', 'FIND_COORDINATOR', 'JOIN_GROUP', 'HEARTBEAT', 'LEAVE_GROUP', 'SYNC_GROUP', 'DESCRIBE_GROUPS',
  'LIST_GROUPS', 'SASL_HANDSHAKE', 'API_VERSIONS', 'CREATE_TOPICS', 'DELETE_TOPICS', 'DELETE_RECORDS', 'INIT_PRODUCER_ID',
  'OFFSET_FOR_LEADER_EPOCH', 'ADD_PARTITIONS_TO_TXN', 'ADD_OFFSETS_TO_TXN', 'END_TXN', 'WRITE_TXN_MARKERS', 'TXN_OFFSET_COMMIT',
  'DESCRIBE_ACLS', 'CREATE_ACLS', 'DELETE_ACLS', 'DESCRIBE_CONFIGS', 'ALTER_CONFIGS', 'ALTER_REPLICA_LOG_DIRS', 'DESCRIBE_LOG_DIRS',
  'SASL_AUTHENTICATE', 'CREATE_PARTITIONS', 'CREATE_DELEGATION_TOKEN', 'RENEW_DELEGATION_TOKEN', 'EXPIRE_DELEGATION_TOKEN',
  'DESCRIBE_DELEGATION_TOKEN', 'DELETE_GROUPS', 'ELECT_LEADERS', 'INCREMENTAL_ALTER_CONFIGS', 'ALTER_PARTITION_REASSIGNMENTS',
  'LIST_PARTITION_REASSIGNMENTS', 'OFFSET_DELETE', 'DESCRIBE_CLIENT_QUOTAS', 'ALTER_CLIENT_QUOTAS', 'DESCRIBE_USER_SCRAM_CREDENTIALS',
  'ALTER_USER_SCRAM_CREDENTIALS', 'VOTE', 'BEGIN_QUORUM_EPOCH', 'END_QUORUM_EPOCH', 'DESCRIBE_QUORUM', 'ALTER_PARTITION',
  'UPDATE_FEATURES', 'ENVELOPE', 'FETCH_SNAPSHOT', 'DESCRIBE_CLUSTER', 'DESCRIBE_PRODUCERS', 'BROKER_REGISTRATION',
  'BROKER_HEARTBEAT', 'UNREGISTER_BROKER', 'DESCRIBE_TRANSACTIONS', 'LIST_TRANSACTIONS', 'ALLOCATE_PRODUCER_IDS',
  'CONSUMER_GROUP_HEARTBEAT', 'CONSUMER_GROUP_DESCRIBE', 'CONTROLLER_REGISTRATION', 'GET_TELEMETRY_SUBSCRIPTIONS', 'PUSH_TELEMETRY',
  'ASSIGN_REPLICAS_TO_DIRS', 'LIST_CLIENT_METRICS_RESOURCES', 'DESCRIBE_TOPIC_PARTITIONS', 'SHARE_GROUP_HEARTBEAT',
  'SHARE_GROUP_DESCRIBE', 'SHARE_FETCH', 'SHARE_ACKNOWLEDGE', 'ADD_RAFT_VOTER', 'REMOVE_RAFT_VOTER', 'UPDATE_RAFT_VOTER',
  'INITIALIZE_SHARE_GROUP_STATE', 'READ_SHARE_GROUP_STATE', 'WRITE_SHARE_GROUP_STATE', 'DELETE_SHARE_GROUP_STATE',
  'READ_SHARE_GROUP_STATE_SUMMARY', 'STREAMS_GROUP_HEARTBEAT', 'STREAMS_GROUP_DESCRIBE', 'DESCRIBE_SHARE_GROUP_OFFSETS',
  'ALTER_SHARE_GROUP_OFFSETS', 'DELETE_SHARE_GROUP_OFFSETS',
];

/** Error code names for the common codes (Kafka protocol guide, "Error Codes"). */
export const KAFKA_ERRORS: Readonly<Record<number, string>> = {
  [-1]: 'UNKNOWN_SERVER_ERROR', 1: 'OFFSET_OUT_OF_RANGE', 2: 'CORRUPT_MESSAGE', 3: 'UNKNOWN_TOPIC_OR_PARTITION',
  4: 'INVALID_FETCH_SIZE', 5: 'LEADER_NOT_AVAILABLE', 6: 'NOT_LEADER_OR_FOLLOWER', 7: 'REQUEST_TIMED_OUT',
  8: 'BROKER_NOT_AVAILABLE', 9: 'REPLICA_NOT_AVAILABLE', 10: 'MESSAGE_TOO_LARGE', 11: 'STALE_CONTROLLER_EPOCH',
  12: 'OFFSET_METADATA_TOO_LARGE', 13: 'NETWORK_EXCEPTION', 14: 'COORDINATOR_LOAD_IN_PROGRESS', 15: 'COORDINATOR_NOT_AVAILABLE',
  16: 'NOT_COORDINATOR', 17: 'INVALID_TOPIC_EXCEPTION', 18: 'RECORD_LIST_TOO_LARGE', 19: 'NOT_ENOUGH_REPLICAS',
  20: 'NOT_ENOUGH_REPLICAS_AFTER_APPEND', 21: 'INVALID_REQUIRED_ACKS', 22: 'ILLEGAL_GENERATION', 23: 'INCONSISTENT_GROUP_PROTOCOL',
  24: 'INVALID_GROUP_ID', 25: 'UNKNOWN_MEMBER_ID', 26: 'INVALID_SESSION_TIMEOUT', 27: 'REBALANCE_IN_PROGRESS',
  28: 'INVALID_COMMIT_OFFSET_SIZE', 29: 'TOPIC_AUTHORIZATION_FAILED', 30: 'GROUP_AUTHORIZATION_FAILED',
  31: 'CLUSTER_AUTHORIZATION_FAILED', 32: 'INVALID_TIMESTAMP', 33: 'UNSUPPORTED_SASL_MECHANISM', 34: 'ILLEGAL_SASL_STATE',
  35: 'UNSUPPORTED_VERSION', 36: 'TOPIC_ALREADY_EXISTS', 37: 'INVALID_PARTITIONS', 38: 'INVALID_REPLICATION_FACTOR',
  39: 'INVALID_REPLICA_ASSIGNMENT', 40: 'INVALID_CONFIG', 41: 'NOT_CONTROLLER', 42: 'INVALID_REQUEST',
  43: 'UNSUPPORTED_FOR_MESSAGE_FORMAT', 44: 'POLICY_VIOLATION', 45: 'OUT_OF_ORDER_SEQUENCE_NUMBER', 46: 'DUPLICATE_SEQUENCE_NUMBER',
  47: 'INVALID_PRODUCER_EPOCH', 48: 'INVALID_TXN_STATE', 49: 'INVALID_PRODUCER_ID_MAPPING', 50: 'INVALID_TRANSACTION_TIMEOUT',
  51: 'CONCURRENT_TRANSACTIONS', 52: 'TRANSACTION_COORDINATOR_FENCED', 53: 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED',
  54: 'SECURITY_DISABLED', 55: 'OPERATION_NOT_ATTEMPTED', 56: 'KAFKA_STORAGE_ERROR', 57: 'LOG_DIR_NOT_FOUND',
  58: 'SASL_AUTHENTICATION_FAILED', 59: 'UNKNOWN_PRODUCER_ID', 60: 'REASSIGNMENT_IN_PROGRESS', 67: 'INVALID_PRINCIPAL_TYPE',
  68: 'NON_EMPTY_GROUP', 69: 'GROUP_ID_NOT_FOUND', 70: 'FETCH_SESSION_ID_NOT_FOUND', 71: 'INVALID_FETCH_SESSION_EPOCH',
  72: 'LISTENER_NOT_FOUND', 73: 'TOPIC_DELETION_DISABLED', 74: 'FENCED_LEADER_EPOCH', 75: 'UNKNOWN_LEADER_EPOCH',
  76: 'UNSUPPORTED_COMPRESSION_TYPE', 77: 'STALE_BROKER_EPOCH', 78: 'OFFSET_NOT_AVAILABLE', 79: 'MEMBER_ID_REQUIRED',
  80: 'PREFERRED_LEADER_NOT_AVAILABLE', 81: 'GROUP_MAX_SIZE_REACHED', 82: 'FENCED_INSTANCE_ID', 100: 'UNKNOWN_TOPIC_ID',
};

/** `UNKNOWN_TOPIC_OR_PARTITION (3)`; codes outside the table read `KAFKA_ERROR (<code>)`. */
export function kafkaFailure(code: number): string {
  return `${KAFKA_ERRORS[code] ?? 'KAFKA_ERROR'} (${code})`;
}

/** Never flexible (SaslHandshake, OffsetDelete). */
const NEVER = Number.POSITIVE_INFINITY;
/** First flexible version (compact encodings, tagged fields, request header v2, response header v1) per API key. */
const FIRST_FLEXIBLE: Readonly<Record<number, number>> = {
  0: 9, 1: 12, 2: 6, 3: 9, 4: 4, 5: 2, 6: 6, 7: 3, 8: 8, 9: 6, 10: 3, 11: 6, 12: 4, 13: 4, 14: 4, 15: 5, 16: 3, 17: NEVER, 18: 3,
  19: 5, 20: 4, 21: 2, 22: 2, 23: 4, 24: 3, 25: 3, 26: 3, 27: 1, 28: 3, 29: 2, 30: 2, 31: 2, 32: 4, 33: 2, 34: 2, 35: 2, 36: 2,
  37: 2, 38: 2, 39: 2, 40: 2, 41: 2, 42: 2, 43: 2, 44: 1, 47: NEVER, 48: 1, 49: 1,
};
/** The APIs added later are flexible from version 0. */
const FLEXIBLE_FROM_START = 45;

function flexible(apiKey: number, version: number): boolean {
  const first = FIRST_FLEXIBLE[apiKey];
  if (first !== undefined) return version >= first;
  return apiKey >= FLEXIBLE_FROM_START;
}

const PRODUCE = 0;
const FETCH = 1;
const METADATA = 3;
const API_VERSIONS = 18;
/** Highest API version accepted as plausible (the newest APIs are at 18 or below). */
const MAX_VERSION = 30;
const DEFAULT_MAX_BODY = 64 * 1024;
const DEFAULT_MAX_FRAME = 100 * 1024 * 1024;
/** Frame bytes kept for parsing at least (topics lie in the first bytes of a request). */
const PARSE_KEEP = 64 * 1024;
/** Bytes a direction may skip looking for a frame header before it is given up. */
const MAX_RESYNC_SCAN = 1024 * 1024;
const MAX_SUMMARY = 256;
/**
 * Requests waiting for a response per stream (clients keep 5 in flight by default); deeper
 * pipelining gives the oldest up as unanswered. With the kept bodies, this bounds a stream's memory.
 */
const MAX_PENDING = 64;
/** Correlation ids skipped by a gap that a resync still accepts. */
const MAX_CORRELATION_STEP = 100000;
/** Size fields that must chain for a direction joined mid-stream to be taken as starting at a frame. */
const CHAIN_FRAMES = 3;
/** Bytes of a direction joined mid-stream held at most while judging whether it starts at a frame. */
const MAX_ALIGN_HOLD = 64 * 1024;

/** A read past the end of the kept bytes. */
class Short extends Error {}

/** Cursor over a frame's kept bytes; every read past the end throws `Short`. */
class Reader {
  pos = 0;
  constructor(
    private readonly b: Uint8Array,
    private readonly end: number = b.length,
  ) {}
  private need(n: number): void {
    if (this.pos + n > this.end) throw new Short();
  }
  skip(n: number): void {
    if (n < 0) throw new Short();
    this.need(n);
    this.pos += n;
  }
  i8(): number {
    this.need(1);
    const v = this.b[this.pos]!;
    this.pos += 1;
    return v > 127 ? v - 256 : v;
  }
  i16(): number {
    this.need(2);
    const v = (this.b[this.pos]! << 8) | this.b[this.pos + 1]!;
    this.pos += 2;
    return v > 32767 ? v - 65536 : v;
  }
  i32(): number {
    this.need(4);
    const p = this.pos;
    this.pos += 4;
    return (this.b[p]! << 24) | (this.b[p + 1]! << 16) | (this.b[p + 2]! << 8) | this.b[p + 3]!;
  }
  uvarint(): number {
    let v = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      this.need(1);
      const x = this.b[this.pos++]!;
      v += (x & 0x7f) * 2 ** shift;
      if ((x & 0x80) === 0) return v;
    }
    throw new Short();
  }
  private text(n: number): string {
    this.need(n);
    const s = Buffer.from(this.b.buffer, this.b.byteOffset + this.pos, n).toString('utf8');
    this.pos += n;
    return s;
  }
  /** STRING / NULLABLE_STRING (INT16 length, -1 = null), or the compact forms (UVARINT length + 1, 0 = null). */
  str(compact: boolean): string | null {
    if (compact) {
      const n = this.uvarint();
      return n === 0 ? null : this.text(n - 1);
    }
    const n = this.i16();
    if (n === -1) return null;
    if (n < 0) throw new Short();
    return this.text(n);
  }
  /** ARRAY length (INT32, -1 = null) or COMPACT_ARRAY (UVARINT length + 1, 0 = null). */
  arr(compact: boolean): number | null {
    const n = compact ? this.uvarint() - 1 : this.i32();
    if (n === -1) return null;
    if (n < 0) throw new Short();
    // Every element takes at least one byte: a larger count is garbage, not a loop to run.
    if (n > this.end - this.pos) throw new Short();
    return n;
  }
  /** BYTES / RECORDS: skipped. */
  bytes(compact: boolean): void {
    const n = compact ? this.uvarint() - 1 : this.i32();
    if (n > 0) this.skip(n);
  }
  uuid(): string {
    this.need(16);
    const h = Buffer.from(this.b.buffer, this.b.byteOffset + this.pos, 16).toString('hex');
    this.pos += 16;
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
  tagged(): void {
    const n = this.uvarint();
    if (n > this.end - this.pos) throw new Short();
    for (let i = 0; i < n; i++) {
      this.uvarint();
      this.skip(this.uvarint());
    }
  }
}

interface Topic {
  name: string;
  partitions: number[];
}

interface RequestHeader {
  apiKey: number;
  version: number;
  correlationId: number;
  clientId: string;
  /** Offset of the body in the frame (past the size field). */
  bodyAt: number;
}

const PRINTABLE = /^[\x20-\x7e]*$/;

/**
 * Reads a request header from `frame` (size field included). `strict` also requires a
 * printable client id, for judging bytes that may not be Kafka at all.
 */
function readRequestHeader(frame: Uint8Array, end: number, strict: boolean): RequestHeader | null {
  try {
    const r = new Reader(frame, end);
    r.skip(4);
    const apiKey = r.i16();
    const version = r.i16();
    const correlationId = r.i32();
    if (apiKey < 0 || apiKey >= KAFKA_API_KEYS.length || version < 0 || version > MAX_VERSION) return null;
    let clientId = '';
    // ControlledShutdown v0 is the one request with header v0 (no client id).
    if (!(apiKey === 7 && version === 0)) {
      clientId = r.str(false) ?? '';
      if (strict && !PRINTABLE.test(clientId)) return null;
      if (flexible(apiKey, version)) {
        const at = r.pos;
        try {
          r.tagged();
        } catch {
          // Header fields are read; only the body (which needs them skipped) is lost.
          r.pos = at;
        }
      }
    }
    return { apiKey, version, correlationId, clientId, bodyAt: r.pos };
  } catch {
    return null;
  }
}

/** Topics named by a Produce, Fetch or Metadata request body; what was read before bytes ran out. */
function requestTopics(h: RequestHeader, frame: Uint8Array, end: number, out: { topics: Topic[]; all: boolean; acks: number | null }): void {
  const r = new Reader(frame, end);
  r.pos = h.bodyAt;
  const v = h.version;
  const flex = flexible(h.apiKey, v);
  try {
    if (h.apiKey === PRODUCE) {
      if (v >= 3) r.str(flex);
      out.acks = r.i16();
      r.i32();
      const n = r.arr(flex) ?? 0;
      for (let i = 0; i < n; i++) {
        const t: Topic = { name: v >= 13 ? r.uuid() : (r.str(flex) ?? ''), partitions: [] };
        out.topics.push(t);
        const np = r.arr(flex) ?? 0;
        for (let j = 0; j < np; j++) {
          t.partitions.push(r.i32());
          r.bytes(flex);
          if (flex) r.tagged();
        }
        if (flex) r.tagged();
      }
    } else if (h.apiKey === FETCH) {
      if (v < 15) r.i32();
      r.skip(8);
      if (v >= 3) r.i32();
      if (v >= 4) r.i8();
      if (v >= 7) r.skip(8);
      const n = r.arr(flex) ?? 0;
      for (let i = 0; i < n; i++) {
        const t: Topic = { name: v >= 13 ? r.uuid() : (r.str(flex) ?? ''), partitions: [] };
        out.topics.push(t);
        const np = r.arr(flex) ?? 0;
        for (let j = 0; j < np; j++) {
          t.partitions.push(r.i32());
          // current_leader_epoch (v9+), fetch_offset, last_fetched_epoch (v12+), log_start_offset (v5+), partition_max_bytes
          r.skip((v >= 9 ? 4 : 0) + 8 + (v >= 12 ? 4 : 0) + (v >= 5 ? 8 : 0) + 4);
          if (flex) r.tagged();
        }
        if (flex) r.tagged();
      }
    } else if (h.apiKey === METADATA) {
      const n = r.arr(flex);
      // v0: an empty list means all topics; v1+: null does.
      if (n === null || (v === 0 && n === 0)) out.all = true;
      for (let i = 0; i < (n ?? 0); i++) {
        const id = v >= 10 ? r.uuid() : null;
        const name = r.str(flex);
        if (flex) r.tagged();
        if (name !== null) out.topics.push({ name, partitions: [] });
        else if (id !== null && id !== '00000000-0000-0000-0000-000000000000') out.topics.push({ name: id, partitions: [] });
      }
    }
  } catch {
    // Bytes ran out (frame larger than what is kept, or cut by a gap): keep what was read.
  }
}

/** The response's error code: top-level, else its first topic's or partition's; 0 when none is read. */
function responseError(apiKey: number, version: number, frame: Uint8Array, end: number): number {
  const flex = flexible(apiKey, version);
  const r = new Reader(frame, end);
  try {
    r.skip(8); // size, correlation id
    if (flex && apiKey !== API_VERSIONS) r.tagged();
    switch (apiKey) {
      case PRODUCE: {
        const n = r.arr(flex) ?? 0;
        for (let i = 0; i < n; i++) {
          if (version >= 13) r.uuid();
          else r.str(flex);
          const np = r.arr(flex) ?? 0;
          if (np > 0) {
            r.i32();
            const e = r.i16();
            if (e !== 0) return e;
            // Only the first partition is read; the rest of the topic is not cheap to skip.
            return 0;
          }
        }
        return 0;
      }
      case FETCH: {
        if (version >= 1) r.i32();
        if (version >= 7) {
          const e = r.i16();
          if (e !== 0) return e;
          r.i32();
        }
        const n = r.arr(flex) ?? 0;
        if (n > 0) {
          if (version >= 13) r.uuid();
          else r.str(flex);
          const np = r.arr(flex) ?? 0;
          if (np > 0) {
            r.i32();
            return r.i16();
          }
        }
        return 0;
      }
      case METADATA: {
        if (version >= 3) r.i32();
        const nb = r.arr(flex) ?? 0;
        for (let i = 0; i < nb; i++) {
          r.i32();
          r.str(flex);
          r.i32();
          if (version >= 1) r.str(flex);
          if (flex) r.tagged();
        }
        if (version >= 2) r.str(flex);
        if (version >= 1) r.i32();
        const nt = r.arr(flex) ?? 0;
        return nt > 0 ? r.i16() : 0;
      }
      // error_code first
      case API_VERSIONS:
      case 17: // SASL_HANDSHAKE
      case 36: // SASL_AUTHENTICATE
        return r.i16();
      // throttle_time_ms, then error_code
      case 22: // INIT_PRODUCER_ID
        r.i32();
        return r.i16();
      case 10: // FIND_COORDINATOR: v4+ moves the error into a coordinators array
        if (version >= 4) return 0;
        if (version >= 1) r.i32();
        return r.i16();
      case 11: // JOIN_GROUP
        if (version >= 2) r.i32();
        return r.i16();
      case 12: // HEARTBEAT
      case 13: // LEAVE_GROUP
      case 14: // SYNC_GROUP
        if (version >= 1) r.i32();
        return r.i16();
      default:
        return 0;
    }
  } catch {
    return 0;
  }
}

/** Whether `bytes` (a direction's first bytes) start with a plausible request frame. */
function judgeRequest(bytes: Uint8Array, maxFrame: number): Verdict {
  if (bytes.length < 4) return 'more';
  const size = ((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0;
  if (size < 8 || size > maxFrame) return 'no';
  if (bytes.length < 8) {
    const apiKey = bytes.length >= 6 ? (bytes[4]! << 8) | bytes[5]! : 0;
    const version = bytes.length >= 8 ? (bytes[6]! << 8) | bytes[7]! : 0;
    return apiKey < KAFKA_API_KEYS.length && version <= MAX_VERSION ? 'more' : 'no';
  }
  const need = Math.min(size + 4, 14);
  if (bytes.length < need) {
    const apiKey = (bytes[4]! << 8) | bytes[5]!;
    const version = (bytes[6]! << 8) | bytes[7]!;
    return apiKey < KAFKA_API_KEYS.length && version <= MAX_VERSION ? 'more' : 'no';
  }
  const apiKey = (bytes[4]! << 8) | bytes[5]!;
  const version = (bytes[6]! << 8) | bytes[7]!;
  if (apiKey >= KAFKA_API_KEYS.length || version > MAX_VERSION) return 'no';
  if (apiKey === 7 && version === 0) return 'yes';
  if (size < 10) return 'no';
  const idLen = (bytes[12]! << 8) | bytes[13]!;
  if (idLen === 0xffff) return 'yes';
  if (idLen > size - 10) return 'no';
  const have = Math.min(bytes.length, 14 + idLen);
  for (let i = 14; i < have; i++) if (bytes[i]! < 0x20 || bytes[i]! > 0x7e) return 'no';
  return have < 14 + idLen ? 'more' : 'yes';
}

/**
 * Kafka by content: a client direction (or one of unknown role) that starts with a request
 * frame: a size up to 100 MiB, a known API key, a version up to 30 and a printable client id
 * that fits in the frame. Responses alone are not claimed (they carry no recognisable field).
 */
export const KAFKA_PROTOCOL: TcpProtocol = {
  name: 'kafka',
  ports: [9092],
  detect(bytes: Uint8Array, fromClient: boolean | undefined): Verdict {
    if (fromClient === false) return 'no';
    return judgeRequest(bytes, DEFAULT_MAX_FRAME);
  },
};

interface Time {
  sec: number;
  nsec: number;
}

type Role = 'request' | 'response';

interface Frame {
  /** Kept frame bytes (size field included), at most the keep limit. */
  bytes: Uint8Array;
  kept: number;
  /** Size field + 4: the whole frame on the wire. */
  total: number;
  /** Bytes of the frame missing from the capture. */
  cut: boolean;
  start: Time;
}

interface Dir {
  state: 'size' | 'frame' | 'resync' | 'dead';
  role: Role | null;
  size: Uint8Array;
  sizeHave: number;
  /** Capture time of the first byte of the size field being read. */
  sizeStart: Time;
  frame: Frame | null;
  /** Frame bytes still to come (past what was received). */
  remaining: number;
  /** Bytes held while looking for a frame header (copied), and the bytes skipped so far. */
  scan: Buffer;
  scanned: number;
  /** Capture time of the bytes being processed. */
  now: Time;
  /** The last request header read on this direction (to resync on the next one). */
  lastRequest: RequestHeader | null;
  seen: boolean;
  /** Joined mid-stream: the first bytes, held until it is known whether they start at a frame. */
  held: HeldBytes | null;
}

interface Pending {
  header: RequestHeader;
  topics: Topic[];
  all: boolean;
  message: EntryMessage;
  start: Time;
  /** Bytes of the request frame were missing. */
  cut: boolean;
  /** The entry's index: taken when the request arrived, so indexes follow request order. */
  index: number;
}

interface Conn {
  dirs: [Dir, Dir];
  pending: Pending[];
  counted: boolean;
}

const newDir = (): Dir => ({
  state: 'size',
  role: null,
  size: new Uint8Array(4),
  sizeHave: 0,
  sizeStart: { sec: 0, nsec: 0 },
  frame: null,
  remaining: 0,
  scan: Buffer.alloc(0),
  scanned: 0,
  now: { sec: 0, nsec: 0 },
  lastRequest: null,
  seen: false,
  held: null,
});

/** Kafka over reassembled TCP streams; see the module comment. */
export class KafkaDissector implements TcpDissector {
  private readonly conns = new Map<number, Conn>();
  private readonly nextIndex = new Map<number, number>();
  private readonly maxBody: number;
  private readonly maxFrame: number;
  private readonly keep: number;
  private readonly counters: KafkaDissectorStats = {
    entries: 0,
    errors: { 'pair-not-found': 0, timeout: 0, dissection: 0 },
    kafkaStreams: 0,
    malformed: 0,
    resyncs: 0,
    skippedBytes: 0,
  };

  constructor(
    private readonly emit: (entry: KafkaEntry) => void,
    options: KafkaDissectorOptions = {},
  ) {
    this.maxBody = Math.max(0, options.maxBodySize ?? DEFAULT_MAX_BODY);
    this.maxFrame = options.maxFrameSize ?? DEFAULT_MAX_FRAME;
    this.keep = Math.max(this.maxBody, PARSE_KEEP);
  }

  open(stream: number, info: StreamOpen): void {
    const conn = this.conn(stream);
    if (info.clientDir !== undefined) {
      conn.dirs[info.clientDir].role = 'request';
      conn.dirs[info.clientDir === 0 ? 1 : 0].role = 'response';
    }
    if (info.upgrade) this.nextIndex.set(stream, info.upgrade.firstIndex);
  }

  /** End of input: requests still waiting come out unanswered. */
  flush(): void {
    for (const [stream, conn] of this.conns) {
      for (const dir of [0, 1] as const) if (conn.dirs[dir].held) this.release(conn, stream, dir, true);
      this.drain(conn, stream);
    }
    this.conns.clear();
  }

  stats(): KafkaDissectorStats {
    return { ...this.counters, errors: { ...this.counters.errors } };
  }

  onData(c: TcpChunk): void {
    const conn = this.conn(c.stream);
    const d = conn.dirs[c.dir];
    if (d.state === 'dead') return;
    if (!d.seen) {
      d.seen = true;
      if (c.midStream || c.offset > 0) d.held = new HeldBytes();
    }
    if (d.held) {
      d.held.add(c.buf, c.start, c.start + c.length, c.firstSec, c.firstNsec);
      if (this.aligned(conn, d, d.held.bytes, false) !== 'more') this.release(conn, c.stream, c.dir, false);
      return;
    }
    d.now = { sec: c.firstSec, nsec: c.firstNsec };
    this.feed(conn, c.stream, c.dir, c.buf, c.start, c.start + c.length);
  }

  onGap(g: TcpGap): void {
    const conn = this.conn(g.stream);
    const d = conn.dirs[g.dir];
    d.seen = true;
    if (d.held) this.release(conn, g.stream, g.dir, true);
    if (d.state === 'dead') return;
    let left = g.length;
    if (d.state === 'frame' && d.frame) {
      const inside = Math.min(left, d.remaining);
      d.remaining -= inside;
      d.frame.cut = true;
      left -= inside;
      if (d.remaining === 0) this.finishFrame(conn, g.stream, g.dir);
    }
    if (left > 0 || d.state === 'size') {
      if (d.state === 'size' && d.sizeHave === 0 && left === 0) return;
      this.toResync(d);
    }
  }

  onEnd(e: TcpEnd): void {
    const conn = this.conns.get(e.stream);
    if (!conn) return;
    const d = conn.dirs[e.dir];
    if (d.held) this.release(conn, e.stream, e.dir, true);
    if (d.state === 'frame' && d.frame) {
      d.frame.cut = true;
      d.remaining = 0;
      this.finishFrame(conn, e.stream, e.dir);
    }
    d.state = 'dead';
    d.scan = Buffer.alloc(0);
    if (e.closed) {
      this.drain(conn, e.stream);
      this.conns.delete(e.stream);
    }
  }

  private conn(stream: number): Conn {
    let c = this.conns.get(stream);
    if (!c) {
      c = { dirs: [newDir(), newDir()], pending: [], counted: false };
      this.conns.set(stream, c);
    }
    return c;
  }

  /**
   * Whether the first bytes of a direction joined mid-stream start at a frame, judged on the
   * bytes alone (`final`: no more will come before a hole or the end): a plausible request
   * header (on a direction that may send requests), a size followed by the correlation id of a
   * waiting request (on one that may answer), or size fields that chain over `CHAIN_FRAMES`
   * frames, or exactly to the end when `final`. `more` while the bytes cannot tell yet.
   */
  private aligned(conn: Conn, d: Dir, bytes: Uint8Array, final: boolean): Verdict {
    // Judged on a bounded prefix, so that the answer never depends on how far past it a chunk went.
    const b = bytes.length > MAX_ALIGN_HOLD ? bytes.subarray(0, MAX_ALIGN_HOLD) : bytes;
    let undecided = false;
    if (d.role !== 'response') {
      const v = judgeRequest(b, this.maxFrame);
      if (v === 'yes') return 'yes';
      if (v === 'more') undecided = true;
    }
    if (d.role !== 'request' && conn.pending.length > 0) {
      if (b.length < 8) undecided = true;
      else {
        const size = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
        const corr = (b[4]! << 24) | (b[5]! << 16) | (b[6]! << 8) | b[7]!;
        if (size >= 4 && size <= this.maxFrame && conn.pending.some((x) => x.header.correlationId === corr)) return 'yes';
      }
    }
    let p = 0;
    for (let frames = 0; frames < CHAIN_FRAMES; frames++) {
      if (p + 4 > MAX_ALIGN_HOLD) break;
      if (p + 4 > b.length) {
        if (final) return frames > 0 && p === b.length ? 'yes' : 'no';
        undecided = true;
        break;
      }
      const size = ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;
      if (size < 8 || size > this.maxFrame) break;
      p += 4 + size;
      if (frames === CHAIN_FRAMES - 1) return 'yes';
    }
    return undecided && !final && b.length < MAX_ALIGN_HOLD ? 'more' : 'no';
  }

  /** Ends the wait of a direction joined mid-stream: its held bytes go through framing, from a frame or resyncing. */
  private release(conn: Conn, stream: number, dir: TcpDirection, final: boolean): void {
    const d = conn.dirs[dir];
    const held = d.held!;
    d.held = null;
    if (this.aligned(conn, d, held.bytes, final) !== 'yes') this.toResync(d);
    held.replay((buf, from, to, sec, nsec) => {
      d.now = { sec, nsec };
      this.feed(conn, stream, dir, buf, from, to);
    });
  }

  private toResync(d: Dir): void {
    d.state = 'resync';
    d.frame = null;
    d.sizeHave = 0;
    d.remaining = 0;
    d.scanned = 0;
    d.scan = Buffer.alloc(0);
    this.counters.resyncs++;
  }

  /** Runs buf[from, to) of one direction through the frame state machine. */
  private feed(conn: Conn, stream: number, dir: TcpDirection, input: Uint8Array, from: number, end: number): void {
    const d = conn.dirs[dir];
    let buf = input;
    let pos = from;
    let to = end;
    while (pos < to) {
      switch (d.state) {
        case 'dead':
          return;
        case 'size': {
          if (d.sizeHave === 0) d.sizeStart = d.now;
          while (d.sizeHave < 4 && pos < to) d.size[d.sizeHave++] = buf[pos++]!;
          if (d.sizeHave < 4) return;
          const size = ((d.size[0]! << 24) | (d.size[1]! << 16) | (d.size[2]! << 8) | d.size[3]!) >>> 0;
          d.sizeHave = 0;
          if (size < 4 || size > this.maxFrame) {
            this.counters.malformed++;
            this.toResync(d);
            // The next frame may start inside the bad size field: rescan from its second byte.
            buf = Buffer.concat([d.size.subarray(1), buf.subarray(pos, to)]);
            pos = 0;
            to = buf.length;
            break;
          }
          const total = size + 4;
          const bytes = new Uint8Array(Math.min(total, this.keep));
          bytes.set(d.size, 0);
          // The frame's time is that of its first byte, whichever chunk completed the size.
          d.frame = { bytes, kept: 4, total, cut: false, start: d.sizeStart };
          d.remaining = size;
          d.state = 'frame';
          break;
        }
        case 'frame': {
          const f = d.frame!;
          const n = Math.min(d.remaining, to - pos);
          // After a hole the kept prefix stops: later bytes would not be at their offsets.
          const room = f.cut ? 0 : Math.min(n, f.bytes.length - f.kept);
          if (room > 0) {
            f.bytes.set(buf.subarray(pos, pos + room), f.kept);
            f.kept += room;
          }
          pos += n;
          d.remaining -= n;
          if (d.remaining === 0) this.finishFrame(conn, stream, dir);
          break;
        }
        case 'resync': {
          const found = this.scan(conn, d, buf.subarray(pos, to));
          if (!found) return;
          buf = found;
          pos = 0;
          to = found.length;
          break;
        }
        default: {
          const never: never = d.state;
          throw new Error(`unknown state ${String(never)}`);
        }
      }
    }
  }

  /**
   * In `resync`: adds bytes to the scan window and looks for a plausible frame header. Returns
   * the bytes from that header on (framing restarts there), or null while none is found.
   */
  private scan(conn: Conn, d: Dir, add: Uint8Array): Buffer | null {
    d.scan = d.scan.length === 0 ? Buffer.from(add) : Buffer.concat([d.scan, add]);
    const buf = d.scan;
    const pending = d.role !== 'request' && conn.pending.length > 0 ? new Set(conn.pending.map((x) => x.header.correlationId)) : null;
    for (let p = 0; p + 4 <= buf.length; p++) {
      const verdict = this.candidate(d, buf, p, pending);
      if (verdict === 'more') {
        // Keep from p on, waiting for more bytes to judge it.
        this.skipScan(conn, d, p);
        return null;
      }
      if (verdict === 'yes') {
        this.counters.skippedBytes += p;
        d.state = 'size';
        d.scan = Buffer.alloc(0);
        return buf.subarray(p);
      }
    }
    this.skipScan(conn, d, Math.max(0, buf.length - 3));
    return null;
  }

  private skipScan(conn: Conn, d: Dir, n: number): void {
    this.counters.skippedBytes += n;
    d.scan = n === 0 ? d.scan : Buffer.from(d.scan.subarray(n));
    // A response side with nothing pending waits for a request to resync on: not a reason to give up.
    if (d.role === 'response' && conn.pending.length === 0) return;
    d.scanned += n;
    if (d.scanned > MAX_RESYNC_SCAN) {
      d.state = 'dead';
      d.scan = Buffer.alloc(0);
    }
  }

  /** Judges a frame header at buf[p]: a request header, or a size followed by a pending correlation id. */
  private candidate(d: Dir, buf: Buffer, p: number, pending: ReadonlySet<number> | null): Verdict {
    const view = buf.subarray(p);
    if (d.role !== 'response') {
      const v = judgeRequest(view, this.maxFrame);
      if (v === 'more') return v;
      if (v === 'yes') {
        // Inside arbitrary bytes a plausible header is easy to find: also ask for this
        // connection's client id and a correlation id just after the last one (clients count
        // up by one per request), or a non-empty client id when none was seen yet.
        const h = readRequestHeader(view, Math.min(view.length, PARSE_KEEP), true);
        if (!h) return view.length < PARSE_KEEP ? 'more' : 'no';
        if (d.lastRequest) {
          const step = (h.correlationId - d.lastRequest.correlationId) | 0;
          if (h.clientId === d.lastRequest.clientId && step > 0 && step <= MAX_CORRELATION_STEP) return 'yes';
        } else if (h.clientId !== '') return 'yes';
      }
    }
    if (pending) {
      if (view.length < 8) return 'more';
      const size = view.readUInt32BE(0);
      if (size < 4 || size > this.maxFrame) return 'no';
      return pending.has(view.readInt32BE(4)) ? 'yes' : 'no';
    }
    return 'no';
  }

  private finishFrame(conn: Conn, stream: number, dir: TcpDirection): void {
    const d = conn.dirs[dir];
    const f = d.frame!;
    d.frame = null;
    if (d.state === 'frame') d.state = 'size';
    if (!conn.counted) {
      conn.counted = true;
      this.counters.kafkaStreams++;
    }
    if (d.role === null) {
      const other = conn.dirs[dir === 0 ? 1 : 0];
      d.role = other.role === 'request' ? 'response' : other.role === 'response' ? 'request' : readRequestHeader(f.bytes, f.kept, true) ? 'request' : 'response';
      if (other.role === null) other.role = d.role === 'request' ? 'response' : 'request';
    }
    if (d.role === 'request') {
      const h = this.onRequest(conn, stream, f);
      if (h) d.lastRequest = h;
    }
    else this.onResponse(conn, stream, f);
  }

  private message(f: Frame): EntryMessage {
    const n = Math.min(f.kept, this.maxBody);
    return { headers: [], body: n > 0 ? f.bytes.slice(0, n) : null, body_size: f.total, truncated: n < f.total };
  }

  private onRequest(conn: Conn, stream: number, f: Frame): RequestHeader | null {
    const header = readRequestHeader(f.bytes, f.kept, false);
    if (!header) {
      this.counters.malformed++;
      return null;
    }
    const out = { topics: [] as Topic[], all: false, acks: null as number | null };
    requestTopics(header, f.bytes, f.kept, out);
    const p: Pending = { header, topics: out.topics, all: out.all, message: this.message(f), start: f.start, cut: f.cut, index: this.take(stream) };
    if (header.apiKey === PRODUCE && out.acks === 0) {
      // acks=0: the broker sends no response.
      this.emitEntry(stream, p, null, true);
      return header;
    }
    if (conn.pending.length >= MAX_PENDING) this.emitEntry(stream, conn.pending.shift()!, null, false);
    conn.pending.push(p);
    return header;
  }

  private onResponse(conn: Conn, stream: number, f: Frame): void {
    if (f.kept < 8) {
      this.counters.malformed++;
      return;
    }
    const corr = (f.bytes[4]! << 24) | (f.bytes[5]! << 16) | (f.bytes[6]! << 8) | f.bytes[7]!;
    const i = conn.pending.findIndex((x) => x.header.correlationId === corr);
    if (i < 0) {
      this.emitEntry(stream, null, { frame: f, correlationId: corr, code: 0, index: this.take(stream) }, false);
      return;
    }
    // Brokers answer in order: the requests before this one will not be answered.
    for (const x of conn.pending.splice(0, i)) this.emitEntry(stream, x, null, false);
    const req = conn.pending.shift()!;
    const code = responseError(req.header.apiKey, req.header.version, f.bytes, f.kept);
    this.emitEntry(stream, req, { frame: f, correlationId: corr, code, index: req.index }, false);
  }

  /** The next entry index of a stream. */
  private take(stream: number): number {
    const index = this.nextIndex.get(stream) ?? 0;
    this.nextIndex.set(stream, index + 1);
    return index;
  }

  private drain(conn: Conn, stream: number): void {
    for (const x of conn.pending.splice(0)) this.emitEntry(stream, x, null, false);
  }

  /** Emits one entry: a request with its response, a request alone (`noResponse`: none is due), or a response alone. */
  private emitEntry(stream: number, req: Pending | null, res: { frame: Frame; correlationId: number; code: number; index: number } | null, noResponse: boolean): void {
    const index = req?.index ?? res!.index;
    const h = req?.header;
    const name = h ? (KAFKA_API_KEYS[h.apiKey] ?? '') : '';
    const topics: string[] = [];
    for (const t of req?.topics ?? []) if (!topics.includes(t.name)) topics.push(t.name);
    let summary = name;
    if (req?.all) summary += ' *';
    else if (req && req.topics.length > 0) summary += ` ${req.topics.map((t) => (t.partitions.length > 0 ? `${t.name}[${t.partitions.join(',')}]` : t.name)).join(' ')}`;
    if (summary.length > MAX_SUMMARY) summary = `${summary.slice(0, MAX_SUMMARY - 3)}...`;
    const path = topics[0] ?? '';
    const t0 = req?.start ?? res!.frame.start;
    const t1 = res?.frame.start;
    const code = res?.code ?? 0;
    const entry: KafkaEntry = {
      protocol: 'kafka',
      stream,
      index,
      timestamp: t0.sec * 1e6 + Math.floor(t0.nsec / 1000),
      elapsed_time: req && t1 ? Math.round(((t1.sec - t0.sec) * 1e9 + (t1.nsec - t0.nsec)) / 1000) : 0,
      method: name,
      path,
      url: path,
      status_code: 0,
      request: req?.message ?? null,
      response: res ? this.message(res.frame) : null,
      kafka_api_key: h?.apiKey ?? -1,
      kafka_api_key_name: name,
      kafka_api_version: h?.version ?? -1,
      kafka_correlation_id: h?.correlationId ?? res!.correlationId,
      kafka_client_id: h?.clientId ?? '',
      kafka_topics: topics,
      kafka_request_summary: summary,
      kafka_error_code: code,
    };
    let error: EntryError | undefined;
    if (!req || (!res && !noResponse)) error = 'pair-not-found';
    else if (req.cut || res?.frame.cut) error = 'dissection';
    if (error) {
      entry.error = error;
      this.counters.errors[error]++;
    }
    if (code !== 0) entry.failure = kafkaFailure(code);
    this.counters.entries++;
    this.emit(entry);
  }
}
