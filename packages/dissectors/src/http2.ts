import type { TcpChunk, TcpDirection, TcpEnd, TcpGap } from '@kubeshark-mcp/capture';
import type { Entry, EntryError, EntryMessage, HeaderList } from './entry';
import { decodeGrpcMessage, GrpcMessageParser, grpcServiceMethod, grpcStatusName, isGrpcContentType } from './grpc';
import { HpackDecoder, HpackError } from './hpack';
import type { HttpTime } from './http1';
import { NO_BYTES, appendBytes, ownRest, takeBytes } from './pending';
import type { StreamOpen, TcpDissector, TcpProtocol, Verdict } from './stream';
import { decodeBody } from './http1';

/**
 * HTTP/2 (RFC 9113) and gRPC dissector: one entry per HTTP/2 stream (request + response),
 * from the two byte streams of each TCP connection. Pure: no I/O, no timers; time is the
 * capture time of the chunks.
 *
 * - Detection: the client connection preface (`PRI * HTTP/2.0...`), or from the server side a
 *   SETTINGS frame at offset 0 that parses strictly (see `HTTP2_PROTOCOL`). After an HTTP/1.1
 *   `Upgrade: h2c` and its 101 (`open` with `upgrade`), stream 1 is the upgraded request: its
 *   method (GET unless the upgrade info says otherwise), path, authority and headers come from
 *   the upgrade; the client still sends the preface, the server starts with SETTINGS.
 * - Frames: every frame type of RFC 9113 §6. DATA payloads are consumed as they arrive (never
 *   buffered whole), padding removed; other frames are buffered up to a bound. Header blocks
 *   (HEADERS or PUSH_PROMISE plus CONTINUATIONs) are decoded with one HPACK decoder per
 *   direction, whose table limit follows the peer's SETTINGS_HEADER_TABLE_SIZE (both the old and
 *   new limits are accepted until the ACK). Every block is decoded, including those of streams
 *   not kept, so the dynamic table stays in step. Pushed streams (even ids) are decoded and
 *   skipped: they are counted, not reported.
 * - Entries: a stream becomes one entry once both sides sent END_STREAM, or at RST_STREAM, or
 *   when the connection ends (then `pair-not-found` without a request or a response, else
 *   `dissection` when a side had not ended). Interim (1xx) responses are skipped; a second
 *   header block on a side is its trailers. Entries come out in completion order; `index` is the
 *   order in which the connection's streams were created.
 * - Failures: gRPC status != 0 -> `grpc-status <n> <NAME>: <message>`; RST_STREAM with an error
 *   code -> `RST_STREAM <NAME>`; else HTTP status >= 400 -> `HTTP <code>`.
 * - Mid-stream joins and gaps: a direction joined mid-stream, or after a gap that did not fall
 *   inside a DATA payload, scans for a frame boundary (a plausible frame header followed by
 *   another) and forgets its HPACK table (entries inserted unseen would shift every index):
 *   header blocks referring to entries from before are flagged `dissection` rather than
 *   decoded wrongly. A gap inside a DATA payload keeps the frame sync; the body is `truncated`
 *   and the entry flagged `dissection`. Every stream still open when a direction loses frames
 *   is flagged `dissection` (the lost bytes may hold its frames or a RST_STREAM). Nothing
 *   malformed escapes as an exception.
 * - Bounds: `maxBodySize` bytes kept per message (`body_size` counts all DATA payload bytes,
 *   padding excluded), `maxHeaderListSize` decoded header bytes per block (and encoded block
 *   bytes up to that plus 16 KiB), `maxStreams` open streams per connection (others are
 *   counted and ignored).
 *
 * Bodies are the DATA payload as sent (not decompressed; a gRPC body keeps its 5-byte message
 * prefixes). Header names and values are decoded as UTF-8.
 */

/** The client connection preface (RFC 9113 §3.4). */
export const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

const FRAME_DATA = 0;
const FRAME_HEADERS = 1;
const FRAME_PRIORITY = 2;
const FRAME_RST_STREAM = 3;
const FRAME_SETTINGS = 4;
const FRAME_PUSH_PROMISE = 5;
const FRAME_PING = 6;
const FRAME_GOAWAY = 7;
const FRAME_WINDOW_UPDATE = 8;
const FRAME_CONTINUATION = 9;

const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

const SETTINGS_HEADER_TABLE_SIZE = 1;

/** Error codes (RFC 9113 §7), by code. */
export const HTTP2_ERROR_NAMES: readonly string[] = [
  'NO_ERROR',
  'PROTOCOL_ERROR',
  'INTERNAL_ERROR',
  'FLOW_CONTROL_ERROR',
  'SETTINGS_TIMEOUT',
  'STREAM_CLOSED',
  'FRAME_SIZE_ERROR',
  'REFUSED_STREAM',
  'CANCEL',
  'COMPRESSION_ERROR',
  'CONNECT_ERROR',
  'ENHANCE_YOUR_CALM',
  'INADEQUATE_SECURITY',
  'HTTP_1_1_REQUIRED',
];

export function http2ErrorName(code: number): string {
  return HTTP2_ERROR_NAMES[code] ?? `0x${code.toString(16)}`;
}

/** Largest frame a peer may send at the default SETTINGS_MAX_FRAME_SIZE. */
const DEFAULT_MAX_FRAME = 16384;
/** Payload of a non-DATA, non-header frame buffered at most (SETTINGS, GOAWAY debug data...). */
const MAX_CONTROL_PAYLOAD = 64 * 1024;
/** Bytes a direction may scan for a frame boundary before it is given up. */
const MAX_RESYNC_SCAN = 64 * 1024;
const DEFAULT_MAX_BODY = 64 * 1024;
const DEFAULT_MAX_HEADER_LIST = 64 * 1024;
const DEFAULT_MAX_STREAMS = 1000;

const u32 = (b: Uint8Array, p: number): number => b[p]! * 0x1000000 + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!);
const u24 = (b: Uint8Array, p: number): number => (b[p]! << 16) | (b[p + 1]! << 8) | b[p + 2]!;

/**
 * Whether the 9 bytes at `p` are a frame header a peer at default settings could send, for
 * detection and resync: a known type, its flags and stream id rules, a length within the
 * default maximum frame size and the type's fixed sizes.
 */
function plausibleFrameHeader(b: Uint8Array, p: number): boolean {
  const len = u24(b, p);
  const type = b[p + 3]!;
  const flags = b[p + 4]!;
  if (len > DEFAULT_MAX_FRAME || b[p + 5]! & 0x80) return false;
  const sid = u32(b, p + 5);
  switch (type) {
    case FRAME_DATA:
      return sid !== 0 && (flags & ~0x09) === 0;
    case FRAME_HEADERS:
      return sid !== 0 && (flags & ~0x2d) === 0 && len > 0;
    case FRAME_PRIORITY:
      return sid !== 0 && len === 5 && flags === 0;
    case FRAME_RST_STREAM:
      return sid !== 0 && len === 4 && flags === 0;
    case FRAME_SETTINGS:
      return sid === 0 && len % 6 === 0 && (flags === 0 || (flags === FLAG_ACK && len === 0));
    case FRAME_PUSH_PROMISE:
      return sid !== 0 && (flags & ~0x0c) === 0 && len >= 4;
    case FRAME_PING:
      return sid === 0 && len === 8 && (flags & ~FLAG_ACK) === 0;
    case FRAME_GOAWAY:
      return sid === 0 && len >= 8 && flags === 0;
    case FRAME_WINDOW_UPDATE:
      return len === 4 && flags === 0;
    case FRAME_CONTINUATION:
      return sid !== 0 && (flags & ~FLAG_END_HEADERS) === 0;
    default:
      return false;
  }
}

/** The SETTINGS payload at b[p, p + len) has only valid values for the settings it knows. */
function validSettings(b: Uint8Array, p: number, len: number): boolean {
  for (let i = p; i < p + len; i += 6) {
    const id = (b[i]! << 8) | b[i + 1]!;
    const v = u32(b, i + 2);
    if (id === 0 || id > 0x10) return false;
    if (id === 2 && v > 1) return false; // ENABLE_PUSH
    if (id === 4 && v > 0x7fffffff) return false; // INITIAL_WINDOW_SIZE
    if (id === 5 && (v < 16384 || v > 0xffffff)) return false; // MAX_FRAME_SIZE
    if (id === 8 && v > 1) return false; // ENABLE_CONNECT_PROTOCOL
  }
  return true;
}

/**
 * HTTP/2 for the stream router. A client direction (or one of unknown role) is HTTP/2 when it
 * starts with the connection preface (`more` while it is a prefix of it). A server direction
 * (`fromClient === false` only) is when it starts with a non-ACK SETTINGS frame on stream 0 whose whole payload is
 * valid settings (at most 10 of them); nothing else is claimed. No port hints: cleartext
 * HTTP/2 runs on any port and its preface is unambiguous.
 */
export const HTTP2_PROTOCOL: TcpProtocol = {
  name: 'http2',
  ports: [],
  detect(bytes: Uint8Array, fromClient: boolean | undefined): Verdict {
    if (fromClient !== false) {
      const n = Math.min(bytes.length, HTTP2_PREFACE.length);
      for (let i = 0; i < n; i++) if (bytes[i] !== HTTP2_PREFACE[i]) return 'no';
      return n === HTTP2_PREFACE.length ? 'yes' : 'more';
    }
    return detectServer(bytes);
  },
};

function detectServer(bytes: Uint8Array): Verdict {
  if (bytes.length < 9) {
    // A prefix of a SETTINGS header: 3 length bytes (a multiple of 6, at most 60), type 4, flags 0, stream 0.
    const want = [0, 0, -1, FRAME_SETTINGS, 0, 0, 0, 0, 0];
    for (let i = 0; i < bytes.length; i++) if (want[i] !== -1 && bytes[i] !== want[i]) return 'no';
    if (bytes.length >= 3 && (bytes[2]! % 6 !== 0 || bytes[2]! > 60)) return 'no';
    return 'more';
  }
  const len = u24(bytes, 0);
  if (bytes[3] !== FRAME_SETTINGS || bytes[4] !== 0 || u32(bytes, 5) !== 0 || len % 6 !== 0 || len > 60) return 'no';
  if (bytes.length < 9 + len) return 'more';
  return validSettings(bytes, 9, len) ? 'yes' : 'no';
}

/** One side (request or response) of an HTTP/2 exchange, with its trailers. */
export interface Http2Message extends EntryMessage {
  /** A second header block on this side (the trailers; gRPC status is in the response's). */
  trailers: HeaderList | null;
}

/** An HTTP/2 stream in the shared vocabulary, plus the HTTP/2 and gRPC details. */
export interface Http2Entry extends Entry {
  /** `grpc` when the request's (or else the response's) content-type starts with application/grpc. */
  protocol: 'http' | 'grpc';
  version: 'HTTP/2';
  http2_stream_id: number;
  request: Http2Message | null;
  response: Http2Message | null;
  /**
   * First byte of each side's first frame, and last byte of its END_STREAM frame (null when
   * absent or not ended): the frame tshark reports END_STREAM on.
   */
  times: {
    request_start: HttpTime | null;
    request_end: HttpTime | null;
    response_start: HttpTime | null;
    response_end: HttpTime | null;
  };
  /** The error code of a RST_STREAM that ended the stream, by name (`CANCEL`...). */
  rst_stream?: string;
  /** gRPC only: from the path `/<service>/<method>` ('' when the path is not of that form). */
  grpc_service?: string;
  grpc_method?: string;
  /** gRPC only: grpc-status of the trailers (or of a trailers-only response); -1 when none was seen. */
  grpc_status?: number;
  /** gRPC only: grpc-message, percent-decoded ('' when absent). */
  grpc_message?: string;
  /** gRPC only: length-prefixed messages per side (counted when their 5-byte prefix arrived), their lengths (at most 10000 kept) and how many had the compressed flag. */
  grpc_request_messages?: number;
  grpc_response_messages?: number;
  grpc_request_message_sizes?: number[];
  grpc_response_message_sizes?: number[];
  grpc_compressed_messages?: number;
}

export interface Http2DissectorOptions {
  /** DATA bytes kept per message. Default 64 KiB; 0 keeps none. */
  maxBodySize?: number;
  /** Decoded header bytes (name + value + 32 per field) kept per header block. Default 64 KiB. */
  maxHeaderListSize?: number;
  /** Open streams kept per connection; streams beyond are counted and ignored. Default 1000. */
  maxStreams?: number;
}

export interface Http2DissectorStats {
  entries: number;
  /** Entries by error. */
  errors: Record<EntryError, number>;
  /** Connections in which HTTP/2 frames were parsed. */
  connections: number;
  /** Streams kept, dropped over `maxStreams`, and pushed (skipped). */
  streams: number;
  droppedStreams: number;
  pushedStreams: number;
  frames: number;
  /** Header blocks that did not decode (HPACK errors, unknown dynamic entries after a join). */
  headerErrors: number;
  /** Header blocks whose decoded fields exceeded `maxHeaderListSize` (fields left out). */
  headerListsTruncated: number;
  /** Frames that broke the protocol's rules (bad padding, CONTINUATION out of place...). */
  protocolErrors: number;
  /** Times a direction looked for a frame boundary, and the bytes it skipped doing so. */
  resyncs: number;
  skippedBytes: number;
}

/** Current memory held by the dissector, for bounds checks. */
export interface Http2DissectorState {
  connections: number;
  openStreams: number;
  /** Unparsed bytes, header block fragments and kept body bytes. */
  bufferedBytes: number;
}

type DirState = 'unknown' | 'preface' | 'frame' | 'payload' | 'data-pad' | 'data' | 'skip' | 'resync' | 'dead';

interface Side {
  headers: HeaderList | null;
  trailers: HeaderList | null;
  start: HttpTime | null;
  end: HttpTime | null;
  ended: boolean;
  parts: Uint8Array[];
  kept: number;
  bodySize: number;
  cut: boolean;
  damaged: boolean;
  grpc: GrpcMessageParser;
}

interface H2Stream {
  id: number;
  index: number;
  req: Side;
  res: Side;
  rst: number | null;
}

interface HeaderBlock {
  sid: number;
  push: boolean;
  parts: Uint8Array[];
  size: number;
  endStream: boolean;
  start: HttpTime;
}


interface Dir {
  state: DirState;
  /**
   * Unconsumed bytes: `buf[pos, end)`, and the stream offset of the first. During `onData`
   * `buf` may be the caller's chunk; what is left after it is copied (`buf` is then ours).
   */
  buf: Buffer;
  pos: number;
  end: number;
  pendingOffset: number;
  /** Capture times of the chunks over the unconsumed bytes: [stream offset, first sec, nsec, last sec, nsec]. */
  marks: number[][];
  /** The last time `timeAt` made. */
  time: HttpTime | null;
  hpack: HpackDecoder;
  block: HeaderBlock | null;
  /** The frame being read. */
  type: number;
  flags: number;
  sid: number;
  len: number;
  frameStart: HttpTime;
  dataLeft: number;
  padLeft: number;
  /** Bytes left in a `skip`, and whether they are the padding of a DATA frame. */
  skipLeft: number;
  skipIsPad: boolean;
  scanned: number;
  seen: boolean;
  ended: boolean;
}

interface Conn {
  /** Flow index of the connection. */
  id: number;
  dirs: [Dir, Dir];
  clientDir: TcpDirection | undefined;
  streams: Map<number, H2Stream>;
  /** Highest stream id created or dropped: frames of lower ids not in `streams` are of closed streams. */
  highest: number;
  nextIndex: number;
  counted: boolean;
  upgrade: StreamOpen['upgrade'];
  /** SETTINGS_HEADER_TABLE_SIZE each direction announced, awaiting the peer's ACK. */
  tableSizeSent: [number | null, number | null];
}

const other = (d: TcpDirection): TcpDirection => (d === 0 ? 1 : 0);
const ZERO: HttpTime = { sec: 0, nsec: 0 };

function header(h: HeaderList | null, name: string): string | undefined {
  if (!h) return undefined;
  for (const [k, v] of h) if (k === name) return v;
  return undefined;
}

/** HTTP/2 and gRPC over reassembled TCP streams; see the module comment. */
export class Http2Dissector implements TcpDissector {
  private readonly conns = new Map<number, Conn>();
  private readonly maxBody: number;
  private readonly maxHeaderList: number;
  private readonly maxBlock: number;
  private readonly maxStreams: number;
  private readonly counters: Http2DissectorStats = {
    entries: 0,
    errors: { 'pair-not-found': 0, timeout: 0, dissection: 0 },
    connections: 0,
    streams: 0,
    droppedStreams: 0,
    pushedStreams: 0,
    frames: 0,
    headerErrors: 0,
    headerListsTruncated: 0,
    protocolErrors: 0,
    resyncs: 0,
    skippedBytes: 0,
  };

  constructor(
    private readonly emit: (entry: Http2Entry) => void,
    options: Http2DissectorOptions = {},
  ) {
    this.maxBody = options.maxBodySize ?? DEFAULT_MAX_BODY;
    this.maxHeaderList = options.maxHeaderListSize ?? DEFAULT_MAX_HEADER_LIST;
    this.maxBlock = this.maxHeaderList + 16 * 1024;
    this.maxStreams = options.maxStreams ?? DEFAULT_MAX_STREAMS;
  }

  stats(): Http2DissectorStats {
    return { ...this.counters, errors: { ...this.counters.errors } };
  }

  state(): Http2DissectorState {
    let openStreams = 0;
    let bufferedBytes = 0;
    for (const c of this.conns.values()) {
      openStreams += c.streams.size;
      for (const d of c.dirs) bufferedBytes += d.end - d.pos + (d.block?.size ?? 0);
      for (const s of c.streams.values()) bufferedBytes += s.req.kept + s.res.kept;
    }
    return { connections: this.conns.size, openStreams, bufferedBytes };
  }

  open(stream: number, info: StreamOpen): void {
    const conn = this.newConn(stream, info.clientDir);
    this.conns.set(stream, conn);
    const up = info.upgrade;
    if (!up) return;
    conn.upgrade = up;
    // The HTTP/1.x entries before the upgrade took the indices below.
    conn.nextIndex = up.firstIndex;
    // The upgrade request is stream 1, half-closed by the client (RFC 7540 §3.2).
    const s = this.createStream(conn, 1);
    if (!s) return;
    const method = up.method ?? 'GET';
    const fields = up.requestHeaders.filter(([k]) => !/^(host|connection|upgrade|http2-settings|keep-alive|proxy-connection|transfer-encoding|te)$/i.test(k));
    s.req.headers = [[':method', method], [':path', up.path], [':authority', up.host], ...fields.map(([k, v]): [string, string] => [k.toLowerCase(), v])];
    s.req.ended = true;
    const settings = header(
      up.requestHeaders.map(([k, v]): [string, string] => [k.toLowerCase(), v]),
      'http2-settings',
    );
    if (settings !== undefined && conn.clientDir !== undefined) {
      // The client's settings, sent in the upgrade request: they govern the server's encoder.
      const b = Buffer.from(settings, 'base64url');
      for (let i = 0; i + 6 <= b.length; i += 6) {
        if (((b[i]! << 8) | b[i + 1]!) === SETTINGS_HEADER_TABLE_SIZE) conn.dirs[other(conn.clientDir)].hpack.setLimit(u32(b, i + 2), true);
      }
    }
  }

  onData(c: TcpChunk): void {
    let conn = this.conns.get(c.stream);
    if (!conn) {
      conn = this.newConn(c.stream, undefined);
      this.conns.set(c.stream, conn);
    }
    const d = conn.dirs[c.dir];
    if (d.state === 'dead') return;
    if (!d.seen) {
      d.seen = true;
      d.pendingOffset = c.offset;
      if (c.midStream || (c.offset > 0 && !conn.upgrade)) this.toResync(d, false);
      else if (conn.clientDir === c.dir) d.state = 'preface';
      else if (conn.clientDir !== undefined) d.state = 'frame';
      // An upgraded request starts when the first bytes after the upgrade arrive.
      const s1 = conn.upgrade ? conn.streams.get(1) : undefined;
      if (s1 && !s1.req.start) s1.req.start = s1.req.end = { sec: c.firstSec, nsec: c.firstNsec };
    }
    d.marks.push([c.offset, c.firstSec, c.firstNsec, c.lastSec, c.lastNsec]);
    const src = c.buf instanceof Buffer ? c.buf : Buffer.from(c.buf.buffer, c.buf.byteOffset, c.buf.byteLength);
    let start = c.start;
    const stop = c.start + c.length;
    // What is pending (a partial frame header or payload) is completed with only the bytes it
    // lacks, so the rest of the chunk is parsed in place instead of copied behind it.
    while (d.end > d.pos && start < stop && d.state !== 'resync') {
      const take = Math.min(stop - start, Math.max(1, this.wanted(d) - (d.end - d.pos)));
      appendBytes(d, src, start, take);
      start += take;
      this.run(conn, c.dir);
    }
    if (start === stop) return;
    // Parse from the caller's buffer when nothing is pending; keep a copy of what is left.
    takeBytes(d, src, start, stop - start);
    this.run(conn, c.dir);
    if (d.buf === src && !ownRest(d)) this.clearPending(d);
  }

  private clearPending(d: Dir): void {
    d.buf = NO_BYTES;
    d.pos = 0;
    d.end = 0;
  }

  /** Bytes the state of `d` needs in one piece to move on (everything, for the states that take any amount). */
  private wanted(d: Dir): number {
    switch (d.state) {
      case 'frame':
        return 9;
      case 'payload':
        return d.len;
      case 'data-pad':
        return 1;
      case 'preface':
        return HTTP2_PREFACE.length;
      default:
        return Infinity;
    }
  }

  onGap(g: TcpGap): void {
    const conn = this.conns.get(g.stream);
    if (!conn) return;
    const d = conn.dirs[g.dir];
    // A direction that starts with a hole starts mid-stream: the general case below.
    d.seen = true;
    if (d.state === 'dead') return;
    let left = g.length;
    if (d.end === d.pos && (d.state === 'data' || d.state === 'skip')) {
      // The hole starts inside a frame payload the parser does not need whole: stay in sync.
      const inside = Math.min(left, d.state === 'data' ? d.dataLeft : d.skipLeft);
      if (d.state === 'data') {
        const side = this.dataSide(conn, g.dir, d.sid);
        if (side) {
          side.bodySize += inside;
          side.cut = true;
          side.damaged = true;
          side.grpc.skip(inside);
        }
        d.dataLeft -= inside;
      } else d.skipLeft -= inside;
      left -= inside;
      d.pendingOffset += inside;
      if (left === 0) {
        // Let the frame end (END_STREAM, padding) be handled as if the bytes had come.
        this.run(conn, g.dir);
        return;
      }
    }
    // Frames were lost: every stream still sending in this direction may have lost some.
    this.loseSync(conn, g.dir);
    d.pendingOffset = g.offset + g.length;
    this.toResync(d, true);
  }

  onEnd(e: TcpEnd): void {
    const conn = this.conns.get(e.stream);
    if (!conn) return;
    const d = conn.dirs[e.dir];
    d.ended = true;
    if (d.state !== 'dead' && (d.end > d.pos || d.block || (d.state !== 'frame' && d.state !== 'resync' && d.state !== 'unknown' && d.state !== 'preface'))) {
      // The direction ended inside a frame.
      this.loseSync(conn, e.dir);
    }
    if (e.closed) {
      this.closeConn(conn);
      this.conns.delete(e.stream);
    }
  }

  flush(): void {
    for (const conn of this.conns.values()) this.closeConn(conn);
    this.conns.clear();
  }

  private newConn(id: number, clientDir: TcpDirection | undefined): Conn {
    const dir = (): Dir => ({
      state: 'unknown',
      buf: NO_BYTES,
      pos: 0,
      end: 0,
      pendingOffset: 0,
      marks: [],
      time: null,
      hpack: new HpackDecoder({ maxHeaderListSize: this.maxHeaderList }),
      block: null,
      type: 0,
      flags: 0,
      sid: 0,
      len: 0,
      frameStart: ZERO,
      dataLeft: 0,
      padLeft: 0,
      skipLeft: 0,
      skipIsPad: false,
      scanned: 0,
      seen: false,
      ended: false,
    });
    return { id, dirs: [dir(), dir()], clientDir, streams: new Map(), highest: 0, nextIndex: 0, counted: false, upgrade: undefined, tableSizeSent: [null, null] };
  }

  private toResync(d: Dir, afterGap: boolean): void {
    d.state = 'resync';
    d.block = null;
    this.clearPending(d);
    d.marks = d.marks.slice(-1);
    d.hpack.reset();
    if (afterGap) this.counters.resyncs++;
  }

  /** Bytes of this direction were lost: flag what they may have belonged to. */
  private loseSync(conn: Conn, dir: TcpDirection): void {
    const d = conn.dirs[dir];
    if (d.block) {
      const s = conn.streams.get(d.block.sid);
      if (s) this.side(conn, s, dir).damaged = true;
    }
    // Every stream still open may have lost frames: those of a side still sending, or a
    // RST_STREAM (which either side may send until the stream is closed).
    for (const s of conn.streams.values()) this.side(conn, s, dir).damaged = true;
  }

  /** The side of stream `s` that direction `dir` sends (the request when the client is unknown). */
  private side(conn: Conn, s: H2Stream, dir: TcpDirection): Side {
    return conn.clientDir === undefined || conn.clientDir === dir ? s.req : s.res;
  }

  private timeAt(d: Dir, off: number, last: boolean): HttpTime {
    let m = d.marks[0];
    for (const x of d.marks) {
      if (x[0]! > off) break;
      m = x;
    }
    if (!m) return ZERO;
    const sec = last ? m[3]! : m[1]!;
    const nsec = last ? m[4]! : m[2]!;
    // Frames of one packet share their time: one object (times are never changed).
    const t = d.time;
    if (t !== null && t.sec === sec && t.nsec === nsec) return t;
    return (d.time = { sec, nsec });
  }

  private consume(d: Dir, n: number): void {
    d.pos += n;
    d.pendingOffset += n;
    let i = 0;
    while (i + 1 < d.marks.length && d.marks[i + 1]![0]! < d.pendingOffset) i++;
    if (i > 0) d.marks.splice(0, i);
    if (d.pos >= d.end) this.clearPending(d);
  }

  private run(conn: Conn, dir: TcpDirection): void {
    const d = conn.dirs[dir];
    for (;;) {
      const buf = d.buf;
      const pos = d.pos;
      const have = d.end - pos;
      switch (d.state) {
        case 'dead':
          this.clearPending(d);
          d.marks = [];
          return;
        case 'unknown':
          if (have === 0) return;
          d.state = buf[pos] === HTTP2_PREFACE[0] ? 'preface' : 'frame';
          break;
        case 'preface': {
          const n = Math.min(have, HTTP2_PREFACE.length);
          if (buf.compare(HTTP2_PREFACE, 0, n, pos, pos + n) === 0) {
            if (n < HTTP2_PREFACE.length) return;
            this.consume(d, n);
            if (conn.clientDir === undefined) conn.clientDir = dir;
            this.countConn(conn);
            d.state = 'frame';
          } else {
            this.counters.protocolErrors++;
            const end = d.end;
            this.toResync(d, false);
            // The bytes stay, for the resync to look through.
            d.buf = buf;
            d.pos = pos;
            d.end = end;
          }
          break;
        }
        case 'resync': {
          if (!this.resync(d)) return;
          break;
        }
        case 'frame': {
          if (have < 9) return;
          d.len = u24(buf, pos);
          d.type = buf[pos + 3]!;
          d.flags = buf[pos + 4]!;
          d.sid = u32(buf, pos + 5) & 0x7fffffff;
          d.frameStart = this.timeAt(d, d.pendingOffset, false);
          this.consume(d, 9);
          this.counters.frames++;
          this.countConn(conn);
          this.startFrame(conn, dir);
          break;
        }
        case 'payload': {
          if (have < d.len) return;
          const payload = buf.subarray(pos, pos + d.len);
          const endTime = this.timeAt(d, d.pendingOffset + d.len - 1, true);
          this.consume(d, d.len);
          d.state = 'frame';
          this.frame(conn, dir, payload, endTime);
          break;
        }
        case 'data-pad': {
          if (have < 1) return;
          const pad = buf[pos]!;
          this.consume(d, 1);
          if (pad > d.len - 1) {
            // Padding longer than the frame (a connection error): drop the frame.
            this.counters.protocolErrors++;
            const side = this.dataSide(conn, dir, d.sid);
            if (side) side.damaged = true;
            this.skip(d, d.len - 1, false);
          } else {
            d.dataLeft = d.len - 1 - pad;
            d.padLeft = pad;
            d.state = 'data';
          }
          break;
        }
        case 'data': {
          if (d.dataLeft > 0) {
            if (have === 0) return;
            const n = Math.min(d.dataLeft, have);
            const side = this.dataSide(conn, dir, d.sid);
            if (side) this.body(side, buf, pos, n);
            d.dataLeft -= n;
            this.consume(d, n);
            if (d.dataLeft > 0) return;
          }
          if (d.padLeft > 0) this.skip(d, d.padLeft, true);
          else this.endData(conn, dir);
          break;
        }
        case 'skip': {
          if (d.skipLeft > 0) {
            if (have === 0) return;
            const n = Math.min(d.skipLeft, have);
            d.skipLeft -= n;
            this.consume(d, n);
            if (d.skipLeft > 0) return;
          }
          if (d.skipIsPad) this.endData(conn, dir);
          else d.state = 'frame';
          break;
        }
        default: {
          const never: never = d.state;
          throw new Error(`unknown state ${String(never)}`);
        }
      }
    }
  }

  private countConn(conn: Conn): void {
    if (!conn.counted) {
      conn.counted = true;
      this.counters.connections++;
    }
  }

  private skip(d: Dir, n: number, isPad: boolean): void {
    d.state = 'skip';
    d.skipLeft = n;
    d.skipIsPad = isPad;
  }

  /** A frame header was read: decide how its payload is consumed. */
  private startFrame(conn: Conn, dir: TcpDirection): void {
    const d = conn.dirs[dir];
    if (d.block && d.type !== FRAME_CONTINUATION) {
      // A header block must be continued by CONTINUATION frames only: it is lost, and so is HPACK sync.
      this.protocolError(conn, dir, d.block.sid);
    }
    switch (d.type) {
      case FRAME_DATA:
        if (d.sid === 0) {
          this.counters.protocolErrors++;
          this.skip(d, d.len, false);
        } else if (d.flags & FLAG_PADDED) {
          if (d.len === 0) {
            this.counters.protocolErrors++;
            d.state = 'frame';
          } else d.state = 'data-pad';
        } else {
          d.dataLeft = d.len;
          d.padLeft = 0;
          d.state = 'data';
        }
        return;
      case FRAME_HEADERS:
      case FRAME_PUSH_PROMISE:
      case FRAME_CONTINUATION:
        if (d.len > this.maxBlock) {
          this.protocolError(conn, dir, d.sid);
          this.skip(d, d.len, false);
        } else d.state = 'payload';
        return;
      default:
        if (d.len > MAX_CONTROL_PAYLOAD) this.skip(d, d.len, false);
        else d.state = 'payload';
    }
  }

  /** A header block could not be followed: flag its stream and forget the HPACK table. */
  private protocolError(conn: Conn, dir: TcpDirection, sid: number): void {
    const d = conn.dirs[dir];
    this.counters.protocolErrors++;
    const s = conn.streams.get(sid);
    if (s) this.side(conn, s, dir).damaged = true;
    d.block = null;
    d.hpack.reset();
  }

  /** A whole non-DATA frame. */
  private frame(conn: Conn, dir: TcpDirection, p: Buffer, endTime: HttpTime): void {
    const d = conn.dirs[dir];
    const { type, flags, sid, len } = d;
    switch (type) {
      case FRAME_HEADERS:
      case FRAME_PUSH_PROMISE: {
        let pos = 0;
        let pad = 0;
        if (flags & FLAG_PADDED) {
          pad = len > 0 ? p[0]! : 0;
          pos = 1;
        }
        if (type === FRAME_HEADERS && flags & FLAG_PRIORITY) pos += 5;
        if (type === FRAME_PUSH_PROMISE) pos += 4;
        if (sid === 0 || pos + pad > len) {
          this.protocolError(conn, dir, sid);
          return;
        }
        const fragment = Buffer.from(p.subarray(pos, len - pad));
        d.block = { sid, push: type === FRAME_PUSH_PROMISE, parts: [fragment], size: fragment.length, endStream: type === FRAME_HEADERS && (flags & FLAG_END_STREAM) !== 0, start: d.frameStart };
        if (flags & FLAG_END_HEADERS) this.headerBlock(conn, dir, endTime);
        return;
      }
      case FRAME_CONTINUATION: {
        const b = d.block;
        if (!b || b.sid !== sid) {
          this.protocolError(conn, dir, sid);
          return;
        }
        b.parts.push(Buffer.from(p));
        b.size += p.length;
        if (b.size > this.maxBlock) this.protocolError(conn, dir, sid);
        else if (flags & FLAG_END_HEADERS) this.headerBlock(conn, dir, endTime);
        return;
      }
      case FRAME_SETTINGS: {
        if (sid !== 0 || len % 6 !== 0) {
          this.counters.protocolErrors++;
          return;
        }
        const peer = other(dir);
        if (flags & FLAG_ACK) {
          // This direction acknowledges the peer's settings: the peer's new table limit is now in force for our encoder.
          const v = conn.tableSizeSent[peer];
          if (v !== null) d.hpack.setLimit(v, true);
          conn.tableSizeSent[peer] = null;
          return;
        }
        for (let i = 0; i < len; i += 6) {
          if (((p[i]! << 8) | p[i + 1]!) !== SETTINGS_HEADER_TABLE_SIZE) continue;
          const v = u32(p, i + 2);
          // Our side decodes what the peer encodes: the limit applies to the peer direction's decoder.
          conn.dirs[peer].hpack.setLimit(v, false);
          conn.tableSizeSent[dir] = v;
        }
        return;
      }
      case FRAME_RST_STREAM: {
        if (len !== 4 || sid === 0) {
          this.counters.protocolErrors++;
          return;
        }
        const s = conn.streams.get(sid);
        if (!s) return;
        s.rst = u32(p, 0);
        const side = this.side(conn, s, dir);
        if (!side.end) side.end = endTime;
        this.finish(conn, s);
        return;
      }
      case FRAME_PRIORITY:
      case FRAME_PING:
      case FRAME_GOAWAY:
      case FRAME_WINDOW_UPDATE:
        return;
      default:
        return; // Unknown frame types are ignored (RFC 9113 §4.1).
    }
  }

  /** The end of a DATA frame (after its padding). */
  private endData(conn: Conn, dir: TcpDirection): void {
    const d = conn.dirs[dir];
    d.state = 'frame';
    if (!(d.flags & FLAG_END_STREAM)) return;
    const s = conn.streams.get(d.sid);
    if (!s) return;
    this.endSide(conn, s, this.side(conn, s, dir), this.timeAt(d, d.pendingOffset - 1, true));
  }

  private dataSide(conn: Conn, dir: TcpDirection, sid: number): Side | null {
    const s = conn.streams.get(sid);
    return s ? this.side(conn, s, dir) : null;
  }

  private body(side: Side, buf: Buffer, from: number, n: number): void {
    side.bodySize += n;
    side.grpc.push(buf, from, from + n);
    const keep = Math.min(n, this.maxBody - side.kept);
    if (keep > 0 && !side.cut) {
      const part = Buffer.allocUnsafe(keep);
      buf.copy(part, 0, from, from + keep);
      side.parts.push(part);
      side.kept += keep;
    }
    if (keep < n) side.cut = true;
  }

  /** A complete header block: decode it (always, for HPACK sync) and give it to its stream. */
  private headerBlock(conn: Conn, dir: TcpDirection, endTime: HttpTime): void {
    const d = conn.dirs[dir];
    const b = d.block!;
    d.block = null;
    let fields: HeaderList | null = null;
    try {
      const out = d.hpack.decode(b.parts.length === 1 ? b.parts[0]! : Buffer.concat(b.parts));
      fields = out.headers;
      if (out.truncated) this.counters.headerListsTruncated++;
    } catch (e) {
      if (!(e instanceof HpackError)) throw e;
      this.counters.headerErrors++;
      // The table may now differ from the encoder's: refuse references to it rather than guess.
      d.hpack.reset();
    }
    if (b.push) return;
    if (conn.clientDir === undefined && fields) {
      // Joined mid-stream: a request names a method, a response a status.
      if (header(fields, ':method') !== undefined) conn.clientDir = dir;
      else if (header(fields, ':status') !== undefined) conn.clientDir = other(dir);
    }
    const fromClient = conn.clientDir === undefined ? b.sid % 2 === 1 && !conn.streams.has(b.sid) : conn.clientDir === dir;
    if (b.sid % 2 === 0) {
      // Server-initiated (pushed) streams are skipped.
      if (!fromClient) this.counters.pushedStreams++;
      return;
    }
    let s = conn.streams.get(b.sid);
    if (!s) {
      if (b.sid <= conn.highest) return; // a stream already closed, or dropped
      s = this.createStream(conn, b.sid) ?? undefined;
      if (!s) return;
    }
    const side = fromClient ? s.req : s.res;
    if (side.ended) {
      this.counters.protocolErrors++;
      return;
    }
    if (side.headers === null) {
      const status = Number(header(fields, ':status'));
      if (!fromClient && status >= 100 && status < 200 && !b.endStream) return; // interim response
      side.headers = fields ?? [];
      side.start = b.start;
      if (!fields) side.damaged = true;
    } else {
      side.trailers = fields ?? [];
      if (!fields) side.damaged = true;
    }
    if (b.endStream) this.endSide(conn, s, side, endTime);
  }

  private createStream(conn: Conn, id: number): H2Stream | null {
    conn.highest = Math.max(conn.highest, id);
    if (conn.streams.size >= this.maxStreams) {
      this.counters.droppedStreams++;
      return null;
    }
    const side = (): Side => ({ headers: null, trailers: null, start: null, end: null, ended: false, parts: [], kept: 0, bodySize: 0, cut: false, damaged: false, grpc: new GrpcMessageParser() });
    const s: H2Stream = { id, index: conn.nextIndex++, req: side(), res: side(), rst: null };
    conn.streams.set(id, s);
    this.counters.streams++;
    return s;
  }

  private endSide(conn: Conn, s: H2Stream, side: Side, end: HttpTime): void {
    side.ended = true;
    side.end = end;
    if (s.req.ended && s.res.ended) this.finish(conn, s);
  }

  private closeConn(conn: Conn): void {
    for (const s of [...conn.streams.values()]) this.finish(conn, s);
  }

  /** Emits stream `s` and forgets it. */
  private finish(conn: Conn, s: H2Stream): void {
    conn.streams.delete(s.id);
    const stream = conn.id;
    const { req, res } = s;
    const reqHeaders = req.headers;
    const resHeaders = res.headers;
    let error: EntryError | undefined;
    if (reqHeaders === null || (resHeaders === null && s.rst === null)) error = 'pair-not-found';
    else if (req.damaged || res.damaged || (s.rst === null && !(req.ended && res.ended))) error = 'dissection';
    const path = header(reqHeaders, ':path') ?? '';
    const authority = header(reqHeaders, ':authority') ?? header(reqHeaders, 'host') ?? '';
    const status = Number(header(resHeaders, ':status') ?? 0) || 0;
    const grpc = isGrpcContentType(header(reqHeaders, 'content-type') ?? header(resHeaders, 'content-type'));
    const t0 = req.start ?? res.start ?? ZERO;
    const message = (m: Side): Http2Message | null => {
      if (m.headers === null) return null;
      // One piece is already a copy of its own: no second copy.
      let body: Buffer | null = m.kept > 0 ? (m.parts.length === 1 ? (m.parts[0] as Buffer) : Buffer.concat(m.parts)) : null;
      let truncated = m.cut;
      // Content-Encoding (gzip, deflate, br) decoded as for HTTP/1.x, bounded; gRPC frames its own compression per message.
      const encoding = grpc ? undefined : header(m.headers, 'content-encoding');
      if (body && encoding) {
        const decoded = decodeBody(body, encoding, this.maxBody, m.cut);
        if (decoded) {
          body = decoded.body;
          truncated = decoded.truncated;
        }
      }
      return { headers: m.headers, body, body_size: m.bodySize, truncated, trailers: m.trailers };
    };
    const entry: Http2Entry = {
      protocol: grpc ? 'grpc' : 'http',
      stream,
      index: s.index,
      timestamp: t0.sec * 1e6 + Math.floor(t0.nsec / 1000),
      elapsed_time: req.start && res.start ? Math.round(((res.start.sec - req.start.sec) * 1e9 + (res.start.nsec - req.start.nsec)) / 1000) : 0,
      method: header(reqHeaders, ':method') ?? '',
      path,
      url: authority + path,
      status_code: status,
      request: message(req),
      response: message(res),
      version: 'HTTP/2',
      http2_stream_id: s.id,
      times: { request_start: req.start, request_end: req.ended ? req.end : null, response_start: res.start, response_end: res.ended ? res.end : null },
    };
    const failures: string[] = [];
    if (grpc) {
      const sm = grpcServiceMethod(path);
      const rawStatus = header(res.trailers, 'grpc-status') ?? header(resHeaders, 'grpc-status');
      const rawMessage = header(res.trailers, 'grpc-message') ?? header(resHeaders, 'grpc-message');
      const gs = rawStatus !== undefined && /^\d{1,9}$/.test(rawStatus.trim()) ? Number(rawStatus.trim()) : -1;
      entry.grpc_service = sm?.service ?? '';
      entry.grpc_method = sm?.method ?? '';
      entry.grpc_status = gs;
      entry.grpc_message = rawMessage === undefined ? '' : decodeGrpcMessage(rawMessage);
      entry.grpc_request_messages = req.grpc.messages;
      entry.grpc_response_messages = res.grpc.messages;
      entry.grpc_request_message_sizes = [...req.grpc.sizes];
      entry.grpc_response_message_sizes = [...res.grpc.sizes];
      entry.grpc_compressed_messages = req.grpc.compressed.filter(Boolean).length + res.grpc.compressed.filter(Boolean).length;
      if (gs > 0) failures.push(`grpc-status ${gs} ${grpcStatusName(gs)}: ${entry.grpc_message}`);
    }
    if (s.rst !== null) {
      entry.rst_stream = http2ErrorName(s.rst);
      if (s.rst !== 0) failures.push(`RST_STREAM ${entry.rst_stream}`);
    }
    if (status >= 400) failures.push(`HTTP ${status}`);
    if (failures.length > 0) entry.failure = failures[0];
    if (error) {
      entry.error = error;
      this.counters.errors[error]++;
    }
    this.counters.entries++;
    this.emit(entry);
  }

  /**
   * Looks for a frame boundary in the unconsumed bytes: a plausible frame header followed by another, or
   * one whose frame ends exactly where the bytes received so far end. Drops what precedes it;
   * false while it cannot tell yet. Gives the direction up past MAX_RESYNC_SCAN bytes.
   */
  private resync(d: Dir): boolean {
    const buf = d.buf;
    const from = d.pos;
    const end = d.end;
    let p = from;
    for (; p + 9 <= end; p++) {
      if (!plausibleFrameHeader(buf, p)) continue;
      const next = p + 9 + u24(buf, p);
      if (next === end || (next + 9 <= end && plausibleFrameHeader(buf, next))) {
        this.dropScanned(d, p - from);
        if (d.state === 'dead') return false;
        d.scanned = 0;
        d.state = 'frame';
        return true;
      }
      if (next + 9 > end) break; // undecided: wait for more bytes
    }
    this.dropScanned(d, Math.min(p - from, Math.max(0, end - from - 8)));
    return false;
  }

  private dropScanned(d: Dir, n: number): void {
    this.counters.skippedBytes += n;
    d.scanned += n;
    this.consume(d, n);
    if (d.scanned + (d.end - d.pos) > MAX_RESYNC_SCAN) {
      this.counters.skippedBytes += d.end - d.pos;
      d.state = 'dead';
      this.clearPending(d);
      d.marks = [];
    }
  }
}
