import zlib from 'node:zlib';
import type { TcpChunk, TcpDirection, TcpEnd, TcpGap } from '@kubeshark-mcp/capture';
import { bsonGet, bsonNumber, bsonString, bsonToJson, readBsonDocument, type BsonDoc, type BsonValue } from './bson';
import type { Entry, EntryError, EntryMessage } from './entry';
import type { StreamOpen, TcpDissector, TcpProtocol, Verdict } from './stream';

/**
 * MongoDB wire protocol dissector. One `MongodbEntry` per request, paired with its reply by the
 * reply's `responseTo` = the request's `requestID`. Pure: no I/O.
 *
 * - Messages: a 16-byte little-endian header (messageLength, requestID, responseTo, opCode),
 *   then the body. Bodies longer than `maxMessageSize` are kept up to it (the BSON reader then
 *   sees a cut document) and the rest is skipped as it arrives.
 * - OP_MSG: flag bits (checksumPresent, moreToCome, exhaustAllowed), a kind-0 body section
 *   (the command: its first key names it, `$db` the database, the value of the first key the
 *   collection for collection commands) and kind-1 document sequences (`documents`,
 *   `updates`, ...: shown under their identifier). Legacy opcodes: OP_QUERY (commands on
 *   `db.$cmd`, e.g. the `isMaster` handshake, or a legacy find), OP_REPLY, OP_GET_MORE,
 *   OP_INSERT, OP_UPDATE, OP_DELETE, OP_KILL_CURSORS.
 * - OP_COMPRESSED: the compressor is recorded; noop and zlib (node:zlib, output bounded by the
 *   message bound) are opened and dissected as the original opcode; snappy and zstd are not.
 * - Replies: `ok`, `errmsg`, `code`, `codeName` of the reply document (OP_MSG body, first
 *   OP_REPLY document; a `$err` with QueryFailure), else the first write error.
 * - Requests with no reply by design (moreToCome, legacy writes, kill cursors) come out at once;
 *   a reply with moreToCome (exhaust cursors, streaming hello) is followed by more replies to
 *   the same request, each its own entry with that request; a reply to a request not seen (a
 *   capture joined late) comes out alone with `pair-not-found`; requests unanswered at the end
 *   of the stream too.
 * - Roles: the client direction from the handshake, else by content (a reply's opcode or a
 *   non-zero responseTo). Gaps: framing is lost; the direction resumes at the first chunk
 *   that starts with a plausible header.
 */

/** A MongoDB request/reply in the shared vocabulary, plus MongoDB's details. */
export interface MongodbEntry extends Entry {
  protocol: 'mongodb';
  /** Opcode of the request (`OP_MSG`, `OP_QUERY`, ...), or of the reply without a request. */
  mongodb_op: string;
  /** Command name: the first key of the command document (`find`, `insert`, `isMaster`, ...). */
  mongodb_command: string;
  mongodb_database: string;
  /** The collection the command names ('' for commands without one). */
  mongodb_collection: string;
  mongodb_request_id: number;
  /** `ok` of the reply (1 or 0), null without a reply or when absent. */
  mongodb_ok: number | null;
  /** Error `code`/`codeName`/`errmsg` of the reply (0 and '' when none). */
  mongodb_error_code: number;
  mongodb_code_name: string;
  mongodb_error_message: string;
  /** `snappy`, `zlib`, `zstd`, `noop` when the request or reply came compressed ('' otherwise). */
  mongodb_compressor: string;
  /** OP_MSG flag bits of the request (0 for other opcodes). */
  mongodb_flags: number;
  /** Documents of the request and the reply, as bounded Extended-JSON-like text ('' when none). */
  mongodb_request_json: string;
  mongodb_response_json: string;
}

export interface MongodbDissectorOptions {
  /** Bytes of a message kept and parsed (header included). Default 1 MiB. */
  maxMessageSize?: number;
  /** Bytes kept as the entry's request/response body (the raw message). Default 64 KiB. */
  maxBodySize?: number;
  /** Characters of `mongodb_request_json`/`mongodb_response_json`. Default 4096. */
  maxJson?: number;
}

export interface MongodbDissectorStats {
  entries: number;
  errors: Record<EntryError, number>;
  resyncs: number;
  /** Messages whose compressor we do not decompress (snappy, zstd). */
  compressedSkipped: number;
  /** Bytes held at the time of the call: pending input and unanswered requests' messages. */
  bufferedBytes: number;
}

export const MONGODB_OPCODES: Readonly<Record<number, string>> = {
  1: 'OP_REPLY',
  1000: 'OP_MSG_LEGACY',
  2001: 'OP_UPDATE',
  2002: 'OP_INSERT',
  2004: 'OP_QUERY',
  2005: 'OP_GET_MORE',
  2006: 'OP_DELETE',
  2007: 'OP_KILL_CURSORS',
  2012: 'OP_COMPRESSED',
  2013: 'OP_MSG',
};

const COMPRESSORS: Readonly<Record<number, string>> = { 0: 'noop', 1: 'snappy', 2: 'zlib', 3: 'zstd' };
const OP_REPLY = 1;
const OP_UPDATE = 2001;
const OP_INSERT = 2002;
const OP_QUERY = 2004;
const OP_GET_MORE = 2005;
const OP_DELETE = 2006;
const OP_KILL_CURSORS = 2007;
const OP_COMPRESSED = 2012;
const OP_MSG = 2013;
const MORE_TO_COME = 0x2;
const CHECKSUM_PRESENT = 0x1;
/** Requests awaiting a reply per connection, and the message bytes they may hold. */
const MAX_PENDING = 1024;
const MAX_HELD_BYTES = 4 * 1024 * 1024;
/** The server's maxMessageSizeBytes (48 MB): longer claims are not MongoDB. */
const MAX_WIRE_MESSAGE = 48_000_000;

/** Commands whose first value names a collection. */
const COLLECTION_COMMANDS = new Set([
  'find', 'insert', 'update', 'delete', 'aggregate', 'count', 'distinct', 'findAndModify', 'findandmodify', 'mapReduce', 'mapreduce',
  'create', 'drop', 'createIndexes', 'dropIndexes', 'listIndexes', 'collMod', 'collStats', 'validate', 'compact', 'renameCollection',
  'shardCollection', 'bulkWrite', 'explain', 'geoNear', 'geoSearch', 'group', 'reIndex', 'cloneCollectionAsCapped', 'convertToCapped',
]);

const i32 = (b: Uint8Array, at: number): number => b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24);

/** A wire header at b[at]: a sane length, a known opcode. */
function plausibleHeader(b: Uint8Array, at: number, avail: number): boolean {
  if (avail < 16) return false;
  const len = i32(b, at);
  const op = i32(b, at + 12);
  return len >= 16 + 5 - 4 && len <= MAX_WIRE_MESSAGE && MONGODB_OPCODES[op] !== undefined && op !== 1000;
}

/**
 * MongoDB by content: a message header with a length between 21 bytes and 48 MB and a known
 * opcode, and, once 21 bytes are there, a body that starts as that opcode's body does (OP_MSG:
 * flags with only defined bits and a kind-0/1 section; OP_QUERY: a collection name ending in
 * NUL soon, OP_REPLY: a document count). Others' first bytes fail early: ASCII protocols
 * (HTTP, Redis) give lengths in the hundreds of megabytes, TLS/PostgreSQL/Kafka big-endian
 * lengths give opcodes we do not know.
 */
export const MONGODB_PROTOCOL: TcpProtocol = {
  name: 'mongodb',
  ports: [27017, 27018, 27019],
  detect(bytes: Uint8Array): Verdict {
    if (bytes.length < 16) {
      if (bytes.length >= 4) {
        const len = i32(bytes, 0);
        if (len < 17 || len > MAX_WIRE_MESSAGE) return 'no';
      }
      return 'more';
    }
    if (!plausibleHeader(bytes, 0, bytes.length)) return 'no';
    if (bytes.length < 21) return 'more';
    const op = i32(bytes, 12);
    const len = i32(bytes, 0);
    switch (op) {
      case OP_MSG: {
        const flags = i32(bytes, 16) >>> 0;
        if ((flags & ~0x10003) !== 0) return 'no';
        return bytes[20] === 0 || bytes[20] === 1 ? 'yes' : 'no';
      }
      case OP_COMPRESSED:
        return bytes.length < 25 ? 'more' : MONGODB_OPCODES[i32(bytes, 16)] !== undefined && (bytes[24] ?? 9) <= 3 ? 'yes' : 'no';
      case OP_REPLY:
        return bytes.length < 36 ? 'more' : i32(bytes, 32) >= 0 && i32(bytes, 32) <= len ? 'yes' : 'no';
      default: {
        // Legacy ops carry a NUL-terminated "db.collection" within the first bytes after 4 bytes of flags.
        const end = Math.min(bytes.length, len, 20 + 256);
        for (let i = 20; i < end; i++) {
          const c = bytes[i]!;
          if (c === 0) return i > 20 && Buffer.from(bytes.buffer, bytes.byteOffset + 20, i - 20).includes(0x2e) ? 'yes' : 'no';
          if (c < 0x20 || c > 0x7e) return 'no';
        }
        return end === bytes.length ? 'more' : 'no';
      }
    }
  },
};

interface Time {
  sec: number;
  nsec: number;
}

/** What was read from one message. */
interface Parsed {
  op: number;
  requestId: number;
  responseTo: number;
  flags: number;
  command: string;
  database: string;
  collection: string;
  /** Documents: the command (or reply) document first. */
  docs: { label: string; doc: BsonDoc }[];
  compressor: string;
  /** Body bytes could not all be read (bound, malformed, compressed). */
  cut: boolean;
}

interface Pending {
  parsed: Parsed;
  start: Time;
  index: number;
  request: EntryMessage;
  /** Bytes of the message read (what its parse and body hold). */
  cost: number;
}

interface Dir {
  pending: Buffer;
  offset: number;
  marks: number[][];
  /** An oversized message: its kept prefix, the bytes still to skip. */
  big: { bytes: Buffer; length: number; start: Time } | null;
  skip: number;
  lost: boolean;
  /** A chunk of this direction was seen (the first one tells a mid-stream join). */
  seen: boolean;
}

interface Conn {
  clientDir: TcpDirection | undefined;
  dirs: [Dir, Dir];
  requests: Map<number, Pending>;
  /** Sum of the pending requests' costs. */
  held: number;
  /** Requests answered by a reply with moreToCome, by that reply's requestID. */
  streaming: Map<number, Pending>;
  nextIndex: number;
}

const newDir = (): Dir => ({ pending: Buffer.alloc(0), offset: 0, marks: [], big: null, skip: 0, lost: false, seen: false });

/** MongoDB over reassembled TCP streams; see the module comment. */
export class MongodbDissector implements TcpDissector {
  private readonly conns = new Map<number, Conn>();
  private readonly maxMessage: number;
  private readonly maxBody: number;
  private readonly maxJson: number;
  private readonly counters: MongodbDissectorStats = {
    entries: 0,
    errors: { 'pair-not-found': 0, timeout: 0, dissection: 0 },
    resyncs: 0,
    compressedSkipped: 0,
    bufferedBytes: 0,
  };

  constructor(
    private readonly emit: (entry: MongodbEntry) => void,
    options: MongodbDissectorOptions = {},
  ) {
    this.maxMessage = Math.max(options.maxMessageSize ?? 1024 * 1024, 64);
    this.maxBody = options.maxBodySize ?? 64 * 1024;
    this.maxJson = options.maxJson ?? 4096;
  }

  open(stream: number, info: StreamOpen): void {
    this.conns.set(stream, { clientDir: info.clientDir, dirs: [newDir(), newDir()], requests: new Map(), held: 0, streaming: new Map(), nextIndex: info.upgrade?.firstIndex ?? 0 });
  }

  /** Nothing is pending outside streams: every request comes out when its stream ends. */
  flush(): void {}

  /** Counters, and the bytes held right now over all streams (pending input, unanswered requests). */
  stats(): MongodbDissectorStats {
    let buffered = 0;
    for (const c of this.conns.values()) {
      buffered += c.held;
      for (const d of c.dirs) buffered += d.pending.length + (d.big?.bytes.length ?? 0);
    }
    return { ...this.counters, errors: { ...this.counters.errors }, bufferedBytes: buffered };
  }

  private conn(stream: number): Conn {
    let c = this.conns.get(stream);
    if (!c) {
      c = { clientDir: undefined, dirs: [newDir(), newDir()], requests: new Map(), held: 0, streaming: new Map(), nextIndex: 0 };
      this.conns.set(stream, c);
    }
    return c;
  }

  onData(chunk: TcpChunk): void {
    const conn = this.conn(chunk.stream);
    const d = conn.dirs[chunk.dir];
    const bytes = chunk.buf.subarray(chunk.start, chunk.start + chunk.length);
    if (!d.seen) {
      d.seen = true;
      // Joined mid-stream: the first byte need not start a message; wait for a chunk that does.
      if (chunk.midStream) d.lost = true;
    }
    if (d.lost) {
      if (!plausibleHeader(bytes, 0, bytes.length)) return;
      d.lost = false;
      d.pending = Buffer.alloc(0);
      d.marks = [];
      this.counters.resyncs++;
    }
    if (d.pending.length === 0) d.offset = chunk.offset;
    d.marks.push([chunk.offset, chunk.firstSec, chunk.firstNsec]);
    d.pending = d.pending.length === 0 ? Buffer.from(bytes) : Buffer.concat([d.pending, bytes]);
    this.run(conn, chunk.stream, chunk.dir);
  }

  onGap(gap: TcpGap): void {
    const d = this.conn(gap.stream).dirs[gap.dir];
    if (d.big && d.skip > 0 && gap.length <= d.skip) {
      // The hole is inside the skipped part of an oversized message: nothing lost we keep.
      d.skip -= gap.length;
      d.offset += gap.length;
      if (d.skip === 0) this.finishBig(this.conn(gap.stream), gap.stream, gap.dir);
      return;
    }
    d.lost = true;
    d.big = null;
    d.skip = 0;
    d.pending = Buffer.alloc(0);
    d.marks = [];
  }

  onEnd(end: TcpEnd): void {
    if (!end.closed) return;
    const conn = this.conns.get(end.stream);
    if (!conn) return;
    for (const p of conn.requests.values()) this.emitEntry(end.stream, p.index, p.parsed, p.start, p.request, null);
    this.conns.delete(end.stream);
  }

  private timeAt(d: Dir, offset: number): Time {
    let t: Time = { sec: 0, nsec: 0 };
    for (const m of d.marks) {
      if (m[0]! > offset) break;
      t = { sec: m[1]!, nsec: m[2]! };
    }
    return t;
  }

  private consume(d: Dir, n: number): void {
    d.pending = d.pending.subarray(n);
    d.offset += n;
    while (d.marks.length > 1 && d.marks[1]![0]! <= d.offset) d.marks.shift();
  }

  private run(conn: Conn, stream: number, dir: TcpDirection): void {
    const d = conn.dirs[dir];
    while (!d.lost) {
      if (d.skip > 0) {
        const n = Math.min(d.skip, d.pending.length);
        this.consume(d, n);
        d.skip -= n;
        if (d.skip > 0) return;
        this.finishBig(conn, stream, dir);
        continue;
      }
      if (d.pending.length < 16) return;
      if (!plausibleHeader(d.pending, 0, d.pending.length)) {
        d.lost = true;
        d.pending = Buffer.alloc(0);
        return;
      }
      const len = i32(d.pending, 0);
      const start = this.timeAt(d, d.offset);
      if (len <= this.maxMessage) {
        if (d.pending.length < len) return;
        const msg = Buffer.from(d.pending.subarray(0, len));
        this.consume(d, len);
        this.message(conn, stream, dir, msg, len, start);
        continue;
      }
      if (d.pending.length < this.maxMessage) return;
      d.big = { bytes: Buffer.from(d.pending.subarray(0, this.maxMessage)), length: len, start };
      this.consume(d, this.maxMessage);
      d.skip = len - this.maxMessage;
    }
  }

  /**
   * A reply with moreToCome (exhaustAllowed requests, streaming hello): the server sends more
   * replies without new requests, each answering the previous reply's requestID.
   */
  private awaitMore(conn: Conn, reply: Parsed, req: Pending): void {
    if (reply.op !== OP_MSG || (reply.flags & MORE_TO_COME) === 0) return;
    conn.streaming.set(reply.requestId, req);
    if (conn.streaming.size > MAX_PENDING) conn.streaming.delete(conn.streaming.keys().next().value!);
  }

  private finishBig(conn: Conn, stream: number, dir: TcpDirection): void {
    const d = conn.dirs[dir];
    const big = d.big;
    d.big = null;
    if (big) this.message(conn, stream, dir, big.bytes, big.length, big.start);
  }

  private message(conn: Conn, stream: number, dir: TcpDirection, msg: Buffer, length: number, start: Time): void {
    const parsed = this.parse(msg, length);
    if (conn.clientDir === undefined) {
      // Legacy requests may carry any responseTo (some drivers send -1): only OP_REPLY and an
      // OP_MSG answering something are replies.
      const isReply = parsed.op === OP_REPLY || (parsed.op === OP_MSG && parsed.responseTo !== 0);
      conn.clientDir = (isReply ? (dir === 0 ? 1 : 0) : dir) as TcpDirection;
    }
    const body: EntryMessage = { headers: [], body: Buffer.from(msg.subarray(0, Math.min(this.maxBody, msg.length))), body_size: length, truncated: Math.min(this.maxBody, msg.length) < length };
    if (dir === conn.clientDir && !(parsed.op === OP_MSG && parsed.responseTo !== 0)) {
      const index = conn.nextIndex++;
      const noReply = (parsed.op === OP_MSG && (parsed.flags & MORE_TO_COME) !== 0) || [OP_INSERT, OP_UPDATE, OP_DELETE, OP_KILL_CURSORS].includes(parsed.op);
      if (noReply) {
        this.emitEntry(stream, index, parsed, start, body, null, true);
        return;
      }
      const old = conn.requests.get(parsed.requestId);
      if (old) this.emitEntry(stream, old.index, old.parsed, old.start, old.request, null);
      if (old) conn.held -= old.cost;
      conn.requests.set(parsed.requestId, { parsed, start, index, request: body, cost: msg.length });
      conn.held += msg.length;
      // A server that never answers: bound what we hold (requests, and the messages they keep).
      while (conn.requests.size > MAX_PENDING || (conn.requests.size > 1 && conn.held > MAX_HELD_BYTES)) {
        const [id, p] = conn.requests.entries().next().value!;
        conn.requests.delete(id);
        conn.held -= p.cost;
        this.emitEntry(stream, p.index, p.parsed, p.start, p.request, null);
      }
      return;
    }
    const req = conn.requests.get(parsed.responseTo);
    if (req) {
      conn.requests.delete(parsed.responseTo);
      conn.held -= req.cost;
      this.emitEntry(stream, req.index, req.parsed, req.start, req.request, { parsed, start, message: body });
      this.awaitMore(conn, parsed, req);
      return;
    }
    const streamed = conn.streaming.get(parsed.responseTo);
    if (streamed) {
      // The next reply of an exhaust cursor or a streaming hello: answers the same request.
      conn.streaming.delete(parsed.responseTo);
      this.emitEntry(stream, conn.nextIndex++, streamed.parsed, start, streamed.request, { parsed, start, message: body });
      this.awaitMore(conn, parsed, streamed);
      return;
    }
    this.emitEntry(stream, conn.nextIndex++, null, start, null, { parsed, start, message: body });
  }

  /** Reads a whole message (or its kept prefix). Never throws. */
  private parse(msg: Buffer, length: number, depth = 0): Parsed {
    const p: Parsed = {
      op: i32(msg, 12),
      requestId: i32(msg, 4) >>> 0,
      responseTo: i32(msg, 8) >>> 0,
      flags: 0,
      command: '',
      database: '',
      collection: '',
      docs: [],
      compressor: '',
      cut: msg.length < length,
    };
    const end = msg.length;
    const limits = { maxDepth: 32, maxElements: 10000 };
    const cstr = (at: number): [string, number] | null => {
      const nul = msg.indexOf(0, at);
      return nul < 0 || nul - at > 1024 ? null : [msg.toString('utf8', at, nul), nul + 1];
    };
    const docsFrom = (at: number, label: string, stop = end): void => {
      while (at + 5 <= stop && p.docs.length < 1000) {
        const r = readBsonDocument(msg.subarray(0, stop), at, limits);
        p.docs.push({ label, doc: r.doc });
        if (r.doc.cut || r.end <= at) {
          p.cut = true;
          return;
        }
        at = r.end;
      }
    };
    const namespace = (ns: string): void => {
      const dot = ns.indexOf('.');
      p.database = dot < 0 ? ns : ns.slice(0, dot);
      p.collection = dot < 0 ? '' : ns.slice(dot + 1);
    };
    switch (p.op) {
      case OP_MSG: {
        if (end < 21) break;
        p.flags = i32(msg, 16) >>> 0;
        let at = 20;
        const stop = (p.flags & CHECKSUM_PRESENT) !== 0 ? Math.min(end, length - 4) : end;
        while (at < stop) {
          const kind = msg[at]!;
          at++;
          if (kind === 0) {
            const r = readBsonDocument(msg.subarray(0, stop), at, limits);
            p.docs.unshift({ label: 'body', doc: r.doc });
            if (r.doc.cut) {
              p.cut = true;
              break;
            }
            at = r.end;
          } else if (kind === 1) {
            if (at + 4 > stop) break;
            const size = i32(msg, at);
            const id = cstr(at + 4);
            if (size < 5 || !id) {
              p.cut = true;
              break;
            }
            docsFrom(id[1], id[0], Math.min(at + size, stop));
            at += size;
          } else {
            p.cut = true;
            break;
          }
        }
        const body = p.docs.find((x) => x.label === 'body')?.doc;
        if (body) {
          this.command(p, body);
          p.database = bsonString(bsonGet(body, '$db')) ?? '';
        }
        break;
      }
      case OP_QUERY: {
        const ns = cstr(20);
        if (!ns) break;
        namespace(ns[0]);
        docsFrom(ns[1] + 8, 'query');
        const q = p.docs[0]?.doc;
        if (p.collection === '$cmd' || p.collection.startsWith('$cmd.')) {
          p.collection = '';
          if (q) {
            const inner = q.entries[0]?.[0] === '$query' || q.entries[0]?.[0] === 'query' ? q.entries[0][1] : undefined;
            this.command(p, inner?.t === 'doc' ? inner.v : q);
          }
        } else p.command = 'find';
        break;
      }
      case OP_REPLY:
        if (end >= 36) {
          p.flags = i32(msg, 16) >>> 0;
          docsFrom(36, 'reply');
        }
        break;
      case OP_GET_MORE:
      case OP_DELETE:
      case OP_UPDATE:
      case OP_INSERT: {
        const ns = cstr(20);
        if (!ns) break;
        namespace(ns[0]);
        p.command = p.op === OP_GET_MORE ? 'getMore' : p.op === OP_DELETE ? 'delete' : p.op === OP_UPDATE ? 'update' : 'insert';
        const docsAt = p.op === OP_INSERT ? ns[1] : p.op === OP_GET_MORE ? end : ns[1] + 4;
        docsFrom(docsAt, p.op === OP_INSERT ? 'documents' : 'selector');
        if (p.op === OP_UPDATE && p.docs[1]) p.docs[1].label = 'update';
        break;
      }
      case OP_KILL_CURSORS:
        p.command = 'killCursors';
        break;
      case OP_COMPRESSED: {
        if (end < 25) break;
        const original = i32(msg, 16);
        const size = i32(msg, 20);
        p.compressor = COMPRESSORS[msg[24]!] ?? `compressor-${msg[24]!}`;
        let inner: Buffer | null = null;
        if (p.compressor === 'noop') inner = msg.subarray(25);
        else if (p.compressor === 'zlib' && depth === 0 && !p.cut) {
          try {
            inner = zlib.inflateSync(msg.subarray(25), { maxOutputLength: Math.max(1, Math.min(size, this.maxMessage)) });
          } catch {
            inner = null;
          }
        } else this.counters.compressedSkipped++;
        if (inner && depth === 0) {
          const header = Buffer.alloc(16);
          header.writeInt32LE(16 + Math.max(size, inner.length), 0);
          header.writeUInt32LE(p.requestId, 4);
          header.writeUInt32LE(p.responseTo, 8);
          header.writeInt32LE(original, 12);
          const q = this.parse(Buffer.concat([header, inner]), 16 + Math.max(size, inner.length), depth + 1);
          return { ...q, compressor: p.compressor };
        }
        p.cut = true;
        break;
      }
      default:
        p.cut = true;
        break;
    }
    return p;
  }

  private command(p: Parsed, doc: BsonDoc): void {
    const first = doc.entries[0];
    if (!first) return;
    p.command = first[0];
    if (COLLECTION_COMMANDS.has(first[0])) p.collection = bsonString(first[1]) ?? '';
    else if (first[0] === 'getMore') p.collection = bsonString(bsonGet(doc, 'collection')) ?? '';
  }

  private json(p: Parsed): string {
    if (p.docs.length === 0) return '';
    if (p.docs.length === 1 && (p.docs[0]!.label === 'body' || p.docs[0]!.label === 'query' || p.docs[0]!.label === 'reply')) return bsonToJson(p.docs[0]!.doc, this.maxJson);
    // Several documents: an object keyed by section, each a list.
    const groups = new Map<string, BsonValue[]>();
    for (const { label, doc } of p.docs) {
      const g = groups.get(label) ?? [];
      g.push({ t: 'doc', v: doc });
      groups.set(label, g);
    }
    const wrapper: BsonDoc = { entries: [], cut: false };
    for (const [label, list] of groups) {
      wrapper.entries.push([label, label === 'body' && list.length === 1 ? list[0]! : { t: 'array', v: { entries: list.map((v, i) => [String(i), v]), cut: false } }]);
    }
    return bsonToJson(wrapper, this.maxJson);
  }

  private emitEntry(
    stream: number,
    index: number,
    req: Parsed | null,
    start: Time,
    request: EntryMessage | null,
    res: { parsed: Parsed; start: Time; message: EntryMessage } | null,
    noReply = false,
  ): void {
    const reply = res?.parsed ?? null;
    const replyDoc = reply?.docs[0]?.doc;
    let ok: number | null = null;
    let code = 0;
    let codeName = '';
    let errmsg = '';
    if (replyDoc) {
      ok = bsonNumber(bsonGet(replyDoc, 'ok')) ?? null;
      code = bsonNumber(bsonGet(replyDoc, 'code')) ?? 0;
      codeName = bsonString(bsonGet(replyDoc, 'codeName')) ?? '';
      errmsg = bsonString(bsonGet(replyDoc, 'errmsg')) ?? bsonString(bsonGet(replyDoc, '$err')) ?? '';
      if (reply.op === OP_REPLY && (reply.flags & 0x2) !== 0 && ok === null) ok = 0; // QueryFailure
      const we = bsonGet(replyDoc, 'writeErrors');
      const first = we?.t === 'array' ? we.v.entries[0]?.[1] : undefined;
      if (ok === 1 && code === 0 && first?.t === 'doc') {
        code = bsonNumber(bsonGet(first.v, 'code')) ?? 0;
        errmsg = bsonString(bsonGet(first.v, 'errmsg')) ?? '';
        codeName = bsonString(bsonGet(first.v, 'codeName')) ?? '';
      }
    }
    const main = req ?? reply!;
    const collection = req?.collection ?? '';
    const database = req?.database ?? '';
    const entry: MongodbEntry = {
      protocol: 'mongodb',
      stream,
      index,
      timestamp: start.sec * 1e6 + Math.floor(start.nsec / 1000),
      elapsed_time: req && res ? Math.round(((res.start.sec - start.sec) * 1e9 + (res.start.nsec - start.nsec)) / 1000) : 0,
      method: req?.command ?? '',
      path: collection ? `${database}.${collection}` : database,
      url: collection ? `${database}.${collection}` : database,
      status_code: code,
      request,
      response: res?.message ?? null,
      mongodb_op: MONGODB_OPCODES[main.op] ?? String(main.op),
      mongodb_command: req?.command ?? '',
      mongodb_database: database,
      mongodb_collection: collection,
      mongodb_request_id: req?.requestId ?? reply?.responseTo ?? 0,
      mongodb_ok: ok,
      mongodb_error_code: code,
      mongodb_code_name: codeName,
      mongodb_error_message: errmsg,
      mongodb_compressor: req?.compressor || reply?.compressor || '',
      mongodb_flags: req?.op === OP_MSG ? req.flags : 0,
      mongodb_request_json: req ? this.json(req) : '',
      mongodb_response_json: reply ? this.json(reply) : '',
    };
    if (ok === 0 || (code !== 0 && errmsg !== '')) entry.failure = `${codeName || 'Error'} (${code}): ${errmsg}`;
    let error: EntryError | undefined;
    if (!noReply && (!req || !res)) error = 'pair-not-found';
    else if ((req?.cut && !req.compressor) || (reply?.cut && !reply.compressor)) error = 'dissection';
    if (error) {
      entry.error = error;
      this.counters.errors[error]++;
    }
    this.counters.entries++;
    this.emit(entry);
  }
}
