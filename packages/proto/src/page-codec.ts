/**
 * A hand-written codec for StreamEntriesResponse, the message a page of API calls travels in.
 *
 * protobufjs (through proto-loader) encodes by copying the object into message instances
 * (`fromObject`), queueing one writer operation per field and copying them into the result
 * (`finish`), and decodes into message instances that `toObject` copies again: about 4 us an
 * entry on each side, which made the entries of a page, not the query, most of what a page of
 * list_api_calls cost the worker and the hub. This codec writes and reads the wire format
 * directly (one pass to size, one to write; one pass to read) and gives exactly the objects
 * proto-loader gives with LOADER_OPTIONS (every field, defaults filled in, uint64 as Number,
 * the oneof's name in `frame`).
 *
 * It covers the frames StreamEntries sends for pages: `entry` and `batch`. Anything else (a
 * node_status frame, a value of an unexpected type, bytes it does not understand) goes to
 * protobufjs, so the codec can only be faster, never different: `encodeEntryFrame` and
 * `decodeEntryFrame` return undefined for those. Field numbers are worker.proto's; the tests
 * check both directions against protobufjs on random entries.
 */

/** Field numbers (worker.proto). */
const FRAME_ENTRY = 1;
const FRAME_NODE_STATUS = 2;
const FRAME_CURSOR = 3;
const FRAME_BATCH = 4;
const BATCH_ENTRIES = 1;
const BATCH_CURSORS = 2;


type Obj = Record<string, unknown>;

const TWO_32 = 4294967296;

// ---------------------------------------------------------------------------------------------
// Encoding: one pass measures (NaN: a value for protobufjs), one writes into a buffer of that size.

/** Strings up to this length are measured and written in JS; longer ones by Buffer. */
const SHORT = 64;

/** UTF-8 length of a string, as Buffer writes it (a lone surrogate becomes 3 bytes of U+FFFD). */
function utf8Length(s: string): number {
  if (s.length > SHORT) return Buffer.byteLength(s, 'utf8');
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 2; // a pair: 2 UTF-16 units, 4 bytes
      i++;
    } else n += 2;
  }
  return n;
}

const varintSize = (n: number): number => (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5);

/** Bytes of a string field (tag, length, text): 0 when empty or absent, NaN when not a string. */
function strSize(v: unknown): number {
  if (typeof v === 'string') {
    if (v.length === 0) return 0;
    const n = utf8Length(v);
    return 1 + varintSize(n) + n;
  }
  return v === undefined || v === null ? 0 : NaN;
}

/** Bytes of a uint32 field: 0 when 0 or absent, NaN when not one. */
function u32Size(v: unknown): number {
  if (typeof v === 'number' && v >= 0 && v <= 0xffffffff && Number.isInteger(v)) return v === 0 ? 0 : 1 + varintSize(v);
  return v === undefined || v === null ? 0 : NaN;
}

/** Bytes of a uint64 field held in a Number (up to 2^53): 0 when 0 or absent, NaN when not one. */
function u64Size(v: unknown): number {
  if (typeof v === 'number' && v >= 0 && v <= Number.MAX_SAFE_INTEGER && Number.isInteger(v)) {
    if (v < TWO_32) return v === 0 ? 0 : 1 + varintSize(v);
    let size = 6; // tag and the 5 bytes that hold 35 bits
    for (let hi = Math.floor(v / TWO_32) >>> 3; hi > 0; hi >>>= 7) size++;
    return size;
  }
  return v === undefined || v === null ? 0 : NaN;
}

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);

/** Content bytes of an Endpoint (NaN: not for this codec). */
function endpointSize(e: Obj): number {
  return strSize(e.ip) + u32Size(e.port) + strSize(e.name) + strSize(e.namespace) + strSize(e.pod) + strSize(e.service) + strSize(e.node) + strSize(e.unresolved);
}

/** An optional message field's content size: -1 absent, NaN not for this codec. */
function endpointField(v: unknown): number {
  if (v === undefined || v === null) return -1;
  return isObj(v) ? endpointSize(v) : NaN;
}

const fieldOf = (content: number): number => (content < 0 ? 0 : 1 + varintSize(content) + content);

/**
 * Content bytes of an Entry; its endpoints' sizes go to `sizes` (entry, src, dst from `at`),
 * so the writing pass does not measure them again. NaN: not for this codec.
 */
function entrySize(e: Obj, sizes: number[], at: number): number {
  const src = endpointField(e.src);
  const dst = endpointField(e.dst);
  const size =
    strSize(e.id) + strSize(e.node) + u64Size(e.timestamp_us) + u64Size(e.elapsed_time_us) + strSize(e.protocol) + fieldOf(src) + fieldOf(dst) +
    strSize(e.method) + strSize(e.path) + u32Size(e.status_code) + strSize(e.flow_id) + strSize(e.json) + strSize(e.url) + strSize(e.error) + strSize(e.failure);
  sizes[at] = size;
  sizes[at + 1] = src;
  sizes[at + 2] = dst;
  return size;
}

let out: Buffer = Buffer.alloc(0);
let pos = 0;

function putVarint(n: number): void {
  const o = out;
  let p = pos;
  while (n >= 0x80) {
    o[p++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  o[p++] = n;
  pos = p;
}

function putVarint64(n: number): void {
  if (n < TWO_32) return putVarint(n);
  let lo = n >>> 0;
  let hi = Math.floor(n / TWO_32) >>> 0;
  for (let i = 0; i < 4; i++) {
    out[pos++] = (lo & 0x7f) | 0x80;
    lo >>>= 7;
  }
  // Bits 28-34: the last 4 of lo and the first 3 of hi.
  let byte = lo | ((hi & 0x7) << 4);
  hi >>>= 3;
  while (hi > 0) {
    out[pos++] = byte | 0x80;
    byte = hi & 0x7f;
    hi >>>= 7;
  }
  out[pos++] = byte;
}

/** A string field; `keepEmpty` for the elements of a repeated field, which keep empty strings. */
function putString(field: number, v: unknown, keepEmpty = false): void {
  if (typeof v !== 'string' || (v.length === 0 && !keepEmpty)) return;
  out[pos++] = (field << 3) | 2;
  if (v.length > SHORT) {
    const n = Buffer.byteLength(v, 'utf8');
    putVarint(n);
    pos += out.write(v, pos, n, 'utf8');
    return;
  }
  const n = utf8Length(v);
  putVarint(n);
  if (n === v.length) {
    // ASCII: one byte a character (the buffer and position in locals for the loop).
    const o = out;
    let p = pos;
    for (let i = 0; i < n; i++) o[p++] = v.charCodeAt(i);
    pos = p;
  } else pos += out.write(v, pos, n, 'utf8');
}

function putU32(field: number, v: unknown): void {
  if (!v) return;
  out[pos++] = field << 3;
  putVarint(v as number);
}

function putU64(field: number, v: unknown): void {
  if (!v) return;
  out[pos++] = field << 3;
  putVarint64(v as number);
}

function putEndpoint(field: number, e: unknown, size: number): void {
  if (size < 0) return;
  const p = e as Obj;
  out[pos++] = (field << 3) | 2;
  putVarint(size);
  putString(1, p.ip);
  putU32(2, p.port);
  putString(3, p.name);
  putString(4, p.namespace);
  putString(5, p.pod);
  putString(6, p.service);
  putString(7, p.node);
  putString(8, p.unresolved);
}

function putEntry(field: number, e: Obj, sizes: number[], at: number): void {
  out[pos++] = (field << 3) | 2;
  putVarint(sizes[at]!);
  putString(1, e.id);
  putString(2, e.node);
  putU64(3, e.timestamp_us);
  putU64(4, e.elapsed_time_us);
  putString(5, e.protocol);
  putEndpoint(6, e.src, sizes[at + 1]!);
  putEndpoint(7, e.dst, sizes[at + 2]!);
  putString(8, e.method);
  putString(9, e.path);
  putU32(10, e.status_code);
  putString(11, e.flow_id);
  putString(12, e.json);
  putString(13, e.url);
  putString(14, e.error);
  putString(15, e.failure);
}

/**
 * A StreamEntriesResponse with an `entry` or a `batch` as protobuf bytes, or undefined when the
 * frame is anything else or holds a value protobufjs would have to convert (then use it).
 */
export function encodeEntryFrame(value: unknown): Buffer | undefined {
  if (!isObj(value)) return undefined;
  const frame = value;
  if (frame.node_status !== undefined && frame.node_status !== null) return undefined;
  const hasEntry = frame.entry !== undefined && frame.entry !== null;
  const batch = frame.batch;
  if (hasEntry === (batch !== undefined && batch !== null)) return undefined;
  let size = strSize(frame.cursor);
  const sizes: number[] = [];
  let entries: unknown[] = [];
  let cursors: unknown[] = [];
  let batchSize = 0;
  if (hasEntry) {
    if (!isObj(frame.entry)) return undefined;
    size += fieldOf(entrySize(frame.entry, sizes, 0));
  } else {
    if (!isObj(batch)) return undefined;
    const es = batch.entries ?? [];
    const cs = batch.cursors ?? [];
    if (!Array.isArray(es) || !Array.isArray(cs)) return undefined;
    entries = es as unknown[];
    cursors = cs as unknown[];
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i];
      if (!isObj(e)) return undefined;
      batchSize += fieldOf(entrySize(e, sizes, i * 3));
    }
    for (const c of cursors) {
      if (typeof c !== 'string') return undefined;
      const n = utf8Length(c);
      batchSize += 1 + varintSize(n) + n;
    }
    size += fieldOf(batchSize);
  }
  if (Number.isNaN(size)) return undefined;
  out = Buffer.allocUnsafe(size);
  pos = 0;
  putString(FRAME_CURSOR, frame.cursor);
  if (hasEntry) putEntry(FRAME_ENTRY, frame.entry as Obj, sizes, 0);
  else {
    out[pos++] = (FRAME_BATCH << 3) | 2;
    putVarint(batchSize);
    for (let i = 0; i < entries.length; i++) putEntry(BATCH_ENTRIES, entries[i] as Obj, sizes, i * 3);
    for (const c of cursors) putString(BATCH_CURSORS, c, true);
  }
  const bytes = out;
  out = Buffer.alloc(0);
  if (pos !== size) throw new Error(`entry frame codec: wrote ${pos} bytes of ${size}`);
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// ListFlowsResponse (a page of flows): encoding

/** L4Protocol (worker.proto) by name, as protobufjs maps an enum given as a string. */
const L4_PROTOCOLS: Record<string, number> = { L4_PROTOCOL_UNSPECIFIED: 0, TCP: 1, UDP: 2 };
const L4_NAMES = ['L4_PROTOCOL_UNSPECIFIED', 'TCP', 'UDP'];

/** Bytes of an enum field given by name or number: 0 for the zero value or absent, NaN otherwise. */
function enumSize(v: unknown): number {
  const n = typeof v === 'string' ? L4_PROTOCOLS[v] : v;
  if (typeof n === 'number' && n >= 0 && n <= 0x7fffffff && Number.isInteger(n)) return n === 0 ? 0 : 1 + varintSize(n);
  return v === undefined || v === null ? 0 : NaN;
}

/** Bytes of a proto3 `optional double`: present whenever it is a number (0 included). */
function optDoubleSize(field: number, v: unknown): number {
  if (typeof v === 'number') return varintSize(field << 3) + 8;
  return v === undefined || v === null ? 0 : NaN;
}

const TCP_HEALTH = ['retransmissions', 'fast_retransmissions', 'spurious_retransmissions', 'out_of_order', 'duplicate_acks', 'zero_windows', 'keep_alives', 'window_full', 'lost_segments', 'acked_unseen_segments'] as const;

function tcpHealthSize(v: unknown): number {
  if (v === undefined || v === null) return -1;
  if (!isObj(v)) return NaN;
  let size = 0;
  for (const k of TCP_HEALTH) size += u64Size(v[k]);
  return size;
}

/** A DirectionStats' content size into sizes[at] and its tcp's into sizes[at + 1] (-1: absent). */
function directionSize(v: unknown, sizes: number[], at: number): number {
  if (v === undefined || v === null) return (sizes[at] = -1);
  if (!isObj(v)) return (sizes[at] = NaN);
  const tcp = (sizes[at + 1] = tcpHealthSize(v.tcp));
  return (sizes[at] = u64Size(v.packets) + u64Size(v.bytes) + u64Size(v.payload_bytes) + fieldOf(tcp));
}

/** Slots per flow in the sizes array: flow, client, server, client_to_server (+ tcp), server_to_client (+ tcp). */
const FLOW_SLOTS = 7;

function flowSize(f: Obj, sizes: number[], at: number): number {
  const client = (sizes[at + 1] = endpointField(f.client));
  const server = (sizes[at + 2] = endpointField(f.server));
  const c2s = directionSize(f.client_to_server, sizes, at + 3);
  const s2c = directionSize(f.server_to_client, sizes, at + 5);
  return (sizes[at] =
    strSize(f.id) + strSize(f.node) + enumSize(f.protocol) + fieldOf(client) + fieldOf(server) + fieldOf(c2s) + fieldOf(s2c) +
    u64Size(f.first_seen_us) + u64Size(f.last_seen_us) + strSize(f.state) + optDoubleSize(11, f.tcp_handshake_client_us) +
    optDoubleSize(12, f.tcp_handshake_server_us) + u32Size(f.syn_count) + u32Size(f.fin_count) + u32Size(f.rst_count) +
    u32Size(f.completeness) + (f.completeness ? 1 : 0)); // field 16: a 2-byte tag
}

function putTag(field: number, wire: number): void {
  putVarint((field << 3) | wire);
}

/** A proto3 `optional double`: written whenever it is a number (0 included). */
function putOptDouble(field: number, v: unknown): void {
  if (typeof v !== 'number') return;
  putTag(field, 1);
  out.writeDoubleLE(v, pos);
  pos += 8;
}

function putDirection(field: number, v: unknown, sizes: number[], at: number): void {
  const size = sizes[at]!;
  if (size < 0) return;
  const d = v as Obj;
  out[pos++] = (field << 3) | 2;
  putVarint(size);
  putU64(1, d.packets);
  putU64(2, d.bytes);
  putU64(3, d.payload_bytes);
  const tcp = sizes[at + 1]!;
  if (tcp < 0) return;
  out[pos++] = (4 << 3) | 2;
  putVarint(tcp);
  const t = d.tcp as Obj;
  for (let i = 0; i < TCP_HEALTH.length; i++) putU64(i + 1, t[TCP_HEALTH[i]!]);
}

function putFlow(f: Obj, sizes: number[], at: number): void {
  out[pos++] = (2 << 3) | 2; // ListFlowsResponse.flows
  putVarint(sizes[at]!);
  putString(1, f.id);
  putString(2, f.node);
  putU32(3, typeof f.protocol === 'string' ? L4_PROTOCOLS[f.protocol] : f.protocol);
  putEndpoint(4, f.client, sizes[at + 1]!);
  putEndpoint(5, f.server, sizes[at + 2]!);
  putDirection(6, f.client_to_server, sizes, at + 3);
  putDirection(7, f.server_to_client, sizes, at + 5);
  putU64(8, f.first_seen_us);
  putU64(9, f.last_seen_us);
  putString(10, f.state);
  putOptDouble(11, f.tcp_handshake_client_us);
  putOptDouble(12, f.tcp_handshake_server_us);
  putU32(13, f.syn_count);
  putU32(14, f.fin_count);
  putU32(15, f.rst_count);
  if (f.completeness) {
    putTag(16, 0);
    putVarint(f.completeness as number);
  }
}

/**
 * A ListFlowsResponse of flows (no groups: aggregates go to protobufjs) as protobuf bytes, or
 * undefined when it is not one this codec writes.
 */
export function encodeFlowList(value: unknown): Buffer | undefined {
  if (!isObj(value)) return undefined;
  const flows = value.flows ?? [];
  const groups = value.groups ?? [];
  if (!Array.isArray(flows) || !Array.isArray(groups) || groups.length > 0) return undefined;
  const sizes: number[] = [];
  let size = strSize(value.node) + u32Size(value.total);
  for (let i = 0; i < flows.length; i++) {
    const f: unknown = flows[i];
    if (!isObj(f)) return undefined;
    size += fieldOf(flowSize(f, sizes, i * FLOW_SLOTS));
  }
  if (Number.isNaN(size)) return undefined;
  out = Buffer.allocUnsafe(size);
  pos = 0;
  putString(1, value.node);
  for (let i = 0; i < flows.length; i++) putFlow(flows[i] as Obj, sizes, i * FLOW_SLOTS);
  putU32(4, value.total);
  const bytes = out;
  out = Buffer.alloc(0);
  if (pos !== size) throw new Error(`flow list codec: wrote ${pos} bytes of ${size}`);
  return bytes;
}


// ---------------------------------------------------------------------------------------------
// Decoding

/** Thrown inside the decoder for anything it leaves to protobufjs; never escapes. */
class NotMine extends Error {}
const NOT_MINE = new NotMine();

/**
 * Buffer's own UTF-8 decoder, without toString's argument handling (which a string of a few
 * bytes pays for twice over); toString where a runtime lacks it.
 */
const utf8Slice: (b: Buffer, start: number, end: number) => string =
  typeof (Buffer.prototype as unknown as { utf8Slice?: unknown }).utf8Slice === 'function'
    ? (b, start, end) => (b as unknown as { utf8Slice(start: number, end: number): string }).utf8Slice(start, end)
    : (b, start, end) => b.toString('utf8', start, end);

class Reader {
  pos = 0;
  /** Where the message being read ends (nested messages narrow it while they are read). */
  end: number;
  constructor(readonly buf: Buffer) {
    this.end = buf.length;
  }

  /** A varint's low 32 bits, unsigned (protobufjs' uint32). */
  uint32(): number {
    const b = this.buf;
    let value = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (this.pos >= this.end) throw NOT_MINE;
      const byte = b[this.pos++]!;
      if (shift < 32) value |= (byte & 0x7f) << shift;
      if (byte < 0x80) return value >>> 0;
    }
    throw NOT_MINE;
  }

  /** A uint64 varint as a Number (protobufjs with longs: Number: lo + hi * 2^32). */
  uint64(): number {
    const b = this.buf;
    let lo = 0;
    let hi = 0;
    let i = 0;
    for (; i < 4; i++) {
      if (this.pos >= this.end) throw NOT_MINE;
      const byte = b[this.pos++]!;
      lo |= (byte & 0x7f) << (i * 7);
      if (byte < 0x80) return lo >>> 0;
    }
    if (this.pos >= this.end) throw NOT_MINE;
    let byte = b[this.pos++]!;
    lo |= (byte & 0x7f) << 28;
    hi = (byte & 0x7f) >> 4;
    for (let shift = 3; byte >= 0x80; shift += 7) {
      if (shift > 31 || this.pos >= this.end) throw NOT_MINE;
      byte = b[this.pos++]!;
      if (shift < 32) hi |= (byte & 0x7f) << shift;
    }
    return (lo >>> 0) + (hi >>> 0) * TWO_32;
  }

  double(): number {
    if (this.pos + 8 > this.end) throw NOT_MINE;
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }

  /** The end of a length-delimited field starting here. */
  span(): number {
    const n = this.uint32();
    const end = this.pos + n;
    if (end > this.end) throw NOT_MINE;
    return end;
  }

  string(): string {
    const end = this.span();
    const s = end > this.pos ? utf8Slice(this.buf, this.pos, end) : '';
    this.pos = end;
    return s;
  }

  skip(wire: number): void {
    if (wire === 0) this.uint32();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.pos = this.span();
    else if (wire === 5) this.pos += 4;
    else throw NOT_MINE; // groups: protobufjs' business
    if (this.pos > this.end) throw NOT_MINE;
  }
}

/** The wire type a known field must have, else the bytes are not ours to read. */
function expect(wire: number, want: number): void {
  if (wire !== want) throw NOT_MINE;
}

function readEndpoint(sub: Reader, end: number): Obj {
  const outer = sub.end;
  sub.end = end;
  const e = { ip: '', port: 0, name: '', namespace: '', pod: '', service: '', node: '', unresolved: '' };
  while (sub.pos < end) {
    const tag = sub.uint32();
    const wire = tag & 7;
    switch (tag >>> 3) {
      case 1: expect(wire, 2); e.ip = sub.string(); break;
      case 2: expect(wire, 0); e.port = sub.uint32(); break;
      case 3: expect(wire, 2); e.name = sub.string(); break;
      case 4: expect(wire, 2); e.namespace = sub.string(); break;
      case 5: expect(wire, 2); e.pod = sub.string(); break;
      case 6: expect(wire, 2); e.service = sub.string(); break;
      case 7: expect(wire, 2); e.node = sub.string(); break;
      case 8: expect(wire, 2); e.unresolved = sub.string(); break;
      default: sub.skip(wire);
    }
  }
  sub.end = outer;
  return e;
}

function readEntry(sub: Reader, end: number): Obj {
  const outer = sub.end;
  sub.end = end;
  const e = {
    id: '',
    node: '',
    timestamp_us: 0,
    elapsed_time_us: 0,
    protocol: '',
    src: null as Obj | null,
    dst: null as Obj | null,
    method: '',
    path: '',
    status_code: 0,
    flow_id: '',
    json: '',
    url: '',
    error: '',
    failure: '',
  };
  while (sub.pos < end) {
    const tag = sub.uint32();
    const wire = tag & 7;
    switch (tag >>> 3) {
      case 1: expect(wire, 2); e.id = sub.string(); break;
      case 2: expect(wire, 2); e.node = sub.string(); break;
      case 3: expect(wire, 0); e.timestamp_us = sub.uint64(); break;
      case 4: expect(wire, 0); e.elapsed_time_us = sub.uint64(); break;
      case 5: expect(wire, 2); e.protocol = sub.string(); break;
      case 6: expect(wire, 2); e.src = readEndpoint(sub, sub.span()); break;
      case 7: expect(wire, 2); e.dst = readEndpoint(sub, sub.span()); break;
      case 8: expect(wire, 2); e.method = sub.string(); break;
      case 9: expect(wire, 2); e.path = sub.string(); break;
      case 10: expect(wire, 0); e.status_code = sub.uint32(); break;
      case 11: expect(wire, 2); e.flow_id = sub.string(); break;
      case 12: expect(wire, 2); e.json = sub.string(); break;
      case 13: expect(wire, 2); e.url = sub.string(); break;
      case 14: expect(wire, 2); e.error = sub.string(); break;
      case 15: expect(wire, 2); e.failure = sub.string(); break;
      default: sub.skip(wire);
    }
  }
  sub.end = outer;
  return e;
}

/**
 * A StreamEntriesResponse holding an `entry` or a `batch`, as proto-loader would give it, or
 * undefined for any other frame or bytes it does not read (then decode with protobufjs, which
 * gives the usual answer or error).
 */
export function decodeEntryFrame(buf: Buffer): Obj | undefined {
  try {
    const r = new Reader(buf);
    let cursor = '';
    let entry: Obj | undefined;
    let batch: { entries: Obj[]; cursors: string[] } | undefined;
    while (r.pos < r.end) {
      const tag = r.uint32();
      const wire = tag & 7;
      switch (tag >>> 3) {
        case FRAME_ENTRY:
          expect(wire, 2);
          // A repeated oneof member merges in protobufjs; rare enough to leave to it.
          if (entry || batch) return undefined;
          entry = readEntry(r, r.span());
          break;
        case FRAME_NODE_STATUS:
          return undefined;
        case FRAME_CURSOR:
          expect(wire, 2);
          cursor = r.string();
          break;
        case FRAME_BATCH: {
          expect(wire, 2);
          if (entry || batch) return undefined;
          const end = r.span();
          const outer = r.end;
          r.end = end;
          const b = { entries: [] as Obj[], cursors: [] as string[] };
          while (r.pos < end) {
            const t = r.uint32();
            const w = t & 7;
            if (t >>> 3 === BATCH_ENTRIES) {
              expect(w, 2);
              b.entries.push(readEntry(r, r.span()));
            } else if (t >>> 3 === BATCH_CURSORS) {
              expect(w, 2);
              b.cursors.push(r.string());
            } else r.skip(w);
          }
          r.end = outer;
          batch = b;
          break;
        }
        default:
          r.skip(wire);
      }
    }
    if (entry) return { cursor, entry, frame: 'entry' };
    if (batch) return { cursor, batch, frame: 'batch' };
    return undefined;
  } catch (err) {
    if (err === NOT_MINE) return undefined;
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// ListFlowsResponse: decoding

function readTcpHealth(r: Reader, end: number): Obj {
  const outer = r.end;
  r.end = end;
  const t = {
    retransmissions: 0,
    fast_retransmissions: 0,
    spurious_retransmissions: 0,
    out_of_order: 0,
    duplicate_acks: 0,
    zero_windows: 0,
    keep_alives: 0,
    window_full: 0,
    lost_segments: 0,
    acked_unseen_segments: 0,
  };
  while (r.pos < end) {
    const tag = r.uint32();
    const field = tag >>> 3;
    if (field >= 1 && field <= TCP_HEALTH.length) {
      expect(tag & 7, 0);
      t[TCP_HEALTH[field - 1]!] = r.uint64();
    } else r.skip(tag & 7);
  }
  r.end = outer;
  return t;
}

function readDirection(r: Reader, end: number): Obj {
  const outer = r.end;
  r.end = end;
  const d = { packets: 0, bytes: 0, payload_bytes: 0, tcp: null as Obj | null };
  while (r.pos < end) {
    const tag = r.uint32();
    const wire = tag & 7;
    switch (tag >>> 3) {
      case 1: expect(wire, 0); d.packets = r.uint64(); break;
      case 2: expect(wire, 0); d.bytes = r.uint64(); break;
      case 3: expect(wire, 0); d.payload_bytes = r.uint64(); break;
      case 4: expect(wire, 2); d.tcp = readTcpHealth(r, r.span()); break;
      default: r.skip(wire);
    }
  }
  r.end = outer;
  return d;
}

function readFlow(r: Reader, end: number): Obj {
  const outer = r.end;
  r.end = end;
  const f: Obj = {
    id: '',
    node: '',
    protocol: L4_NAMES[0] as string | number,
    client: null as Obj | null,
    server: null as Obj | null,
    client_to_server: null as Obj | null,
    server_to_client: null as Obj | null,
    first_seen_us: 0,
    last_seen_us: 0,
    state: '',
    syn_count: 0,
    fin_count: 0,
    rst_count: 0,
    completeness: 0,
  };
  let client: number | undefined;
  let server: number | undefined;
  while (r.pos < end) {
    const tag = r.uint32();
    const wire = tag & 7;
    switch (tag >>> 3) {
      case 1: expect(wire, 2); f.id = r.string(); break;
      case 2: expect(wire, 2); f.node = r.string(); break;
      case 3: {
        expect(wire, 0);
        const n = r.uint32() | 0; // an enum is an int32
        f.protocol = L4_NAMES[n] ?? n;
        break;
      }
      case 4: expect(wire, 2); f.client = readEndpoint(r, r.span()); break;
      case 5: expect(wire, 2); f.server = readEndpoint(r, r.span()); break;
      case 6: expect(wire, 2); f.client_to_server = readDirection(r, r.span()); break;
      case 7: expect(wire, 2); f.server_to_client = readDirection(r, r.span()); break;
      case 8: expect(wire, 0); f.first_seen_us = r.uint64(); break;
      case 9: expect(wire, 0); f.last_seen_us = r.uint64(); break;
      case 10: expect(wire, 2); f.state = r.string(); break;
      case 11: expect(wire, 1); client = r.double(); break;
      case 12: expect(wire, 1); server = r.double(); break;
      case 13: expect(wire, 0); f.syn_count = r.uint32(); break;
      case 14: expect(wire, 0); f.fin_count = r.uint32(); break;
      case 15: expect(wire, 0); f.rst_count = r.uint32(); break;
      case 16: expect(wire, 0); f.completeness = r.uint32(); break;
      default: r.skip(wire);
    }
  }
  // proto3 optional fields: present only when sent, with the oneof's name (LOADER_OPTIONS.oneofs).
  if (client !== undefined) {
    f.tcp_handshake_client_us = client;
    f._tcp_handshake_client_us = 'tcp_handshake_client_us';
  }
  if (server !== undefined) {
    f.tcp_handshake_server_us = server;
    f._tcp_handshake_server_us = 'tcp_handshake_server_us';
  }
  r.end = outer;
  return f;
}

/**
 * A ListFlowsResponse of flows, as proto-loader would give it, or undefined when it has groups
 * or bytes this codec does not read (then decode with protobufjs).
 */
export function decodeFlowList(buf: Buffer): Obj | undefined {
  try {
    const r = new Reader(buf);
    const list = { flows: [] as Obj[], groups: [] as Obj[], node: '', total: 0 };
    while (r.pos < r.end) {
      const tag = r.uint32();
      const wire = tag & 7;
      switch (tag >>> 3) {
        case 1: expect(wire, 2); list.node = r.string(); break;
        case 2: expect(wire, 2); list.flows.push(readFlow(r, r.span())); break;
        case 3: return undefined; // groups
        case 4: expect(wire, 0); list.total = r.uint32(); break;
        default: r.skip(wire);
      }
    }
    return list;
  } catch (err) {
    if (err === NOT_MINE) return undefined;
    throw err;
  }
}
