import zlib from 'node:zlib';
import type { TcpChunk, TcpDirection, TcpEnd, TcpGap } from '@kubeshark-mcp/capture';
import type { Entry, EntryError, EntryMessage, HeaderList } from './entry';
import type { StreamOpen, TcpDissector, TcpProtocol, Verdict } from './stream';

/**
 * HTTP/1.x dissector: consumes the two byte streams of each TCP connection (a
 * `TcpStreamConsumer`, fed by `TcpReassembler`) and emits one `HttpEntry` per request/response
 * pair. Pure: no I/O, no timers; time is the capture time of the chunks.
 *
 * - Detection by content: a direction is HTTP when its first line is a request line
 *   (`METHOD SP target SP HTTP/1.x`) or a status line (`HTTP/1.x SP code`). A direction joined
 *   mid-stream, or resuming after a gap, scans for the next start line instead (bounded); any
 *   other direction is ignored, at the cost of a length check per chunk.
 * - Messages: Content-Length and chunked bodies (chunked wins, RFC 9112 §6.3), responses
 *   read until close when they have neither, no body for HEAD, 1xx, 204 and 304. Keep-alive
 *   and pipelining: responses pair with requests in order per connection. A 1xx interim
 *   response (100-continue) does not complete the pair; 101 and a 2xx to CONNECT do, and end
 *   HTTP on that connection (what follows is another protocol).
 * - Entries are emitted in request order once both messages are complete; requests still
 *   unanswered when the connection closes come out with error `pair-not-found`, and so do
 *   responses with no request to pair with (the request was not captured).
 * - Gaps (bytes missing from the capture): a gap inside a Content-Length body is skipped
 *   (the message continues, flagged `dissection`, body `truncated`); a gap inside headers,
 *   a chunked body or a read-until-close body ends the message with error `dissection`;
 *   a gap that reaches past the message resyncs at the next start line. Whole messages may
 *   have been lost in a gap, so the first response after one pairs with the latest
 *   unanswered request sent before it, and the earlier ones get `pair-not-found`.
 * - Bodies are de-chunked and, for Content-Encoding gzip, deflate and br, decompressed; both
 *   the kept wire bytes and the decoded output are bounded by `maxBodySize` (`truncated`).
 *
 * Timing: `timestamp` is the capture time of the request's first byte and `elapsed_time` is
 * the response's first byte minus that (what Kubeshark reports). `times` also gives the
 * capture time of each message's last byte, the frames tshark reports a message on (so
 * `response_end - request_end` is tshark's `http.time`).
 */

/** Capture time, as the reassembler gives it. */
export interface HttpTime {
  sec: number;
  nsec: number;
}

/** An HTTP exchange in the shared vocabulary, plus the HTTP-specific details. */
export interface HttpEntry extends Entry {
  protocol: 'http';
  /** `HTTP/1.0` or `HTTP/1.1`: the request's, or the response's without a request. */
  version: string;
  /** Reason phrase of the response ('' without one). */
  status_text: string;
  /** First and last byte capture times of each message (null when the message is absent). */
  times: {
    request_start: HttpTime | null;
    request_end: HttpTime | null;
    response_start: HttpTime | null;
    response_end: HttpTime | null;
  };
}

/**
 * A connection that switched protocols (`101 Switching Protocols`): where HTTP/1.x ended in
 * each direction and the bytes the dissector already held beyond that point, so the new
 * protocol's dissector can take over from there.
 */
export interface HttpUpgrade {
  stream: number;
  /** The `Upgrade` header of the response (else the request's), lower-cased: `websocket`, `h2c`, ... */
  protocol: string;
  method: string;
  path: string;
  host: string;
  requestHeaders: HeaderList;
  responseHeaders: HeaderList;
  /** The next entry index on this stream (the HTTP/1.x entries took the ones below). */
  firstIndex: number;
  /** Per direction, the stream offset of the first byte after the HTTP/1.x exchange. */
  boundary: [number, number];
  /** Per direction, bytes already received past the boundary (copies), with the capture time of their first chunk. */
  rest: [HttpRest | null, HttpRest | null];
}

export interface HttpRest {
  offset: number;
  bytes: Uint8Array;
  sec: number;
  nsec: number;
}

export interface HttpDissectorOptions {
  /** Body bytes kept per message, both on the wire (de-chunked) and decoded. Default 64 KiB; 0 keeps none. */
  maxBodySize?: number;
  /** Largest header block (start line included) accepted. Default 64 KiB. */
  maxHeaderSize?: number;
  /**
   * A request whose response has not started this long after it was sent (capture time, see
   * `advance`) comes out as an entry with `pair-not-found`. Default 60 s.
   */
  responseTimeoutMs?: number;
  /**
   * Called when a connection switches protocols after a 101 response, after the upgrade
   * exchange was emitted. HTTP/1.x parsing of that connection stops either way.
   */
  onUpgrade?: (upgrade: HttpUpgrade) => void;
}

export interface HttpDissectorStats {
  entries: number;
  /** Entries by error. */
  errors: Record<EntryError, number>;
  /** Streams in which at least one direction was recognised as HTTP. */
  httpStreams: number;
  /** Times a direction skipped bytes looking for the next start line, and the bytes skipped. */
  resyncs: number;
  skippedBytes: number;
}

const DEFAULT_MAX_BODY = 64 * 1024;
const DEFAULT_MAX_HEADER = 64 * 1024;
/** Bytes kept while looking for a start line: longer lines are not start lines we accept. */
const MAX_START_LINE = 8 * 1024;
/** Bytes a direction of unknown kind (joined mid-stream, or after a gap) may skip looking for HTTP. */
const MAX_UNKNOWN_SCAN = 64 * 1024;

const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) (HTTP\/1\.[01])$/;
const STATUS_LINE = /^(HTTP\/1\.[01]) (\d{3})(?: (.*))?$/;

type Kind = 'request' | 'response';
type State = 'unknown' | 'start' | 'body-length' | 'chunk-size' | 'chunk-data' | 'chunk-crlf' | 'trailers' | 'until-close' | 'resync' | 'dead';

interface Message {
  kind: Kind;
  method: string;
  target: string;
  version: string;
  status: number;
  reason: string;
  headers: HeaderList;
  start: HttpTime;
  end: HttpTime | null;
  /** Stream offset just past the message, once finished. */
  endOffset: number;
  parts: Uint8Array[];
  kept: number;
  bodySize: number;
  /** Wire bytes were not all kept (size limit or a hole). */
  cut: boolean;
  encoding: string;
  error: EntryError | undefined;
}

interface Exchange {
  request: Message | null;
  response: Message | null;
  requestDone: boolean;
  responseDone: boolean;
  /** No response will come (the connection ended, or a later response took its place). */
  unanswered: boolean;
}

/** Parser state of one direction. */
interface Dir {
  kind: Kind | null;
  state: State;
  /** Unconsumed bytes (copied) and the stream offset of their first byte. */
  pending: Buffer;
  pendingOffset: number;
  /** Capture times of the chunks over `pending`: [stream offset, first sec, nsec, last sec, nsec]. */
  marks: number[][];
  msg: Message | null;
  /** Body bytes left in the current Content-Length body or chunk. */
  remaining: number;
  /** Bytes were lost before the current position: whole messages may be missing. */
  afterGap: boolean;
  midStream: boolean;
  /** Bytes skipped looking for a first start line: past MAX_UNKNOWN_SCAN the direction is not HTTP. */
  scanned: number;
  seen: boolean;
  ended: boolean;
}

interface Conn {
  dirs: [Dir, Dir];
  exchanges: Exchange[];
  http: boolean;
  /** An upgrade or tunnel: stop parsing. */
  opaque: boolean;
}

const newDir = (): Dir => ({
  kind: null,
  state: 'unknown',
  pending: Buffer.alloc(0),
  pendingOffset: 0,
  marks: [],
  msg: null,
  remaining: 0,
  afterGap: false,
  midStream: false,
  scanned: 0,
  seen: false,
  ended: false,
});

const METHOD_PREFIX = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{0,20}(?: |$)/;

/** The first bytes of a direction may still become a start line: rejects other protocols early. */
function couldStart(buf: Uint8Array): boolean {
  const head = Buffer.from(buf.buffer, buf.byteOffset, Math.min(buf.length, 22)).toString('latin1');
  return METHOD_PREFIX.test(head) || head.startsWith('HTTP/1.') || 'HTTP/1.'.startsWith(head);
}

/**
 * HTTP/1.x by content: a direction that starts with a request line or a status line (judged
 * on the first line, or the first 8 KiB when no line ends sooner).
 */
export const HTTP_PROTOCOL: TcpProtocol = {
  name: 'http',
  ports: [80, 8080, 8000, 3000, 5000, 8888],
  detect(bytes: Uint8Array): Verdict {
    if (!couldStart(bytes)) return 'no';
    const nl = bytes.indexOf(0x0a);
    if (nl < 0) return bytes.length > MAX_START_LINE ? 'no' : 'more';
    const line = Buffer.from(bytes.buffer, bytes.byteOffset, nl).toString('latin1').replace(/\r$/, '');
    return REQUEST_LINE.test(line) || STATUS_LINE.test(line) ? 'yes' : 'no';
  },
};

/** Finds the end of a header block (just past the empty line) in buf[from, end), or -1. */
function headerEnd(buf: Uint8Array, from: number, end: number): number {
  for (let i = from; i < end; i++) {
    if (buf[i] !== 0x0a) continue;
    if (i + 1 < end && buf[i + 1] === 0x0a) return i + 2;
    if (i + 2 < end && buf[i + 1] === 0x0d && buf[i + 2] === 0x0a) return i + 3;
  }
  return -1;
}

function lineEnd(buf: Uint8Array, from: number, end: number): number {
  for (let i = from; i < end; i++) if (buf[i] === 0x0a) return i;
  return -1;
}

function lineText(buf: Uint8Array, from: number, nl: number): string {
  const e = nl > from && buf[nl - 1] === 0x0d ? nl - 1 : nl;
  return Buffer.from(buf.buffer, buf.byteOffset + from, e - from).toString('latin1');
}

/** The first field named `name` (lower case), compared without regard to case; lengths first, so most names are never lower-cased. */
function header(h: HeaderList, name: string): string | undefined {
  const len = name.length;
  for (let i = 0; i < h.length; i++) {
    const f = h[i]!;
    if (f[0].length === len && f[0].toLowerCase() === name) return f[1];
  }
  return undefined;
}

/** Decodes a body with `Content-Encoding`, output bounded by `max`; `cut` says the input is incomplete. */
export function decodeBody(raw: Buffer, encoding: string, max: number, cut: boolean): { body: Buffer; truncated: boolean } | null {
  const codings = encoding
    .toLowerCase()
    .split(',')
    .map((c) => c.trim())
    .filter((c) => c !== '' && c !== 'identity');
  if (codings.length !== 1) return null;
  const coding = codings[0];
  // Sync flush: a prefix of the input decodes to a prefix of the output without an error.
  // maxOutputLength: a decompression bomb fails fast instead of allocating its output.
  const opts = { finishFlush: zlib.constants.Z_SYNC_FLUSH, maxOutputLength: max + 1 };
  const run = (input: Buffer, raw2: boolean): Buffer => {
    switch (coding) {
      case 'gzip':
      case 'x-gzip':
        return zlib.gunzipSync(input, opts);
      case 'deflate':
        return raw2 ? zlib.inflateRawSync(input, opts) : zlib.inflateSync(input, opts);
      case 'br':
        return zlib.brotliDecompressSync(input, { finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH, maxOutputLength: max + 1 });
      default:
        throw new Error('unsupported coding');
    }
  };
  const bounded = (input: Buffer, raw2: boolean): Buffer | 'too-large' => {
    try {
      return run(input, raw2);
    } catch (e) {
      if ((e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError) return 'too-large';
      throw e;
    }
  };
  const attempt = (raw2: boolean): { body: Buffer; truncated: boolean } => {
    // Bound the output without holding more than `max` bytes of it for long: decode the whole
    // input with a cap first, and only when the output exceeds it, binary-search the longest
    // input prefix whose output fits (the output of a prefix is a prefix of the output).
    const whole = boundedCap(raw, raw2);
    if (whole !== 'too-large') return { body: whole, truncated: cut };
    let lo = 0;
    let hi = raw.length;
    let best: Buffer = Buffer.alloc(0);
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      const out = boundedCap(raw.subarray(0, mid), raw2);
      if (out === 'too-large') hi = mid - 1;
      else {
        lo = mid;
        best = out;
      }
    }
    return { body: best, truncated: true };
  };
  const boundedCap = (input: Buffer, raw2: boolean): Buffer | 'too-large' => {
    const out = bounded(input, raw2);
    return out !== 'too-large' && out.length > max ? 'too-large' : out;
  };
  try {
    return attempt(false);
  } catch {
    if (coding !== 'deflate') return null;
    try {
      // Many servers send raw DEFLATE under "deflate" (no zlib header).
      return attempt(true);
    } catch {
      return null;
    }
  }
}

/** HTTP/1.x over reassembled TCP streams; see the module comment. */
export class HttpDissector implements TcpDissector {
  private readonly conns = new Map<number, Conn>();
  private readonly nextIndex = new Map<number, number>();
  private readonly maxBody: number;
  private readonly maxHeader: number;
  private readonly onUpgrade: ((upgrade: HttpUpgrade) => void) | undefined;
  private readonly timeoutNs: number;
  private readonly counters: HttpDissectorStats = {
    entries: 0,
    errors: { 'pair-not-found': 0, timeout: 0, dissection: 0 },
    httpStreams: 0,
    resyncs: 0,
    skippedBytes: 0,
  };

  constructor(
    private readonly emit: (entry: HttpEntry) => void,
    options: HttpDissectorOptions = {},
  ) {
    this.maxBody = options.maxBodySize ?? DEFAULT_MAX_BODY;
    this.maxHeader = options.maxHeaderSize ?? DEFAULT_MAX_HEADER;
    this.onUpgrade = options.onUpgrade;
    this.timeoutNs = (options.responseTimeoutMs ?? 60_000) * 1e6;
  }

  /**
   * The capture clock moved on (live capture calls this periodically): requests still waiting
   * for a response after the timeout are given up and come out as `pair-not-found` entries,
   * so a keep-alive connection that never closes does not hold them forever.
   */
  advance(sec: number, nsec: number): void {
    const now = sec * 1e9 + nsec;
    for (const [stream, conn] of this.conns) {
      if (conn.opaque) continue;
      let expired = false;
      for (const x of conn.exchanges) {
        const req = x.request;
        if (!req || x.response || x.unanswered || !x.requestDone) continue;
        const sent = (req.end ?? req.start).sec * 1e9 + (req.end ?? req.start).nsec;
        if (now - sent >= this.timeoutNs) {
          x.unanswered = true;
          expired = true;
        }
      }
      if (expired) this.emitReady(conn, stream);
    }
  }

  /** Roles are told by content (request or status line), so the client direction is not needed. */
  open(_stream: number, _info: StreamOpen): void {}

  /** Nothing is pending outside streams: every exchange comes out when its stream ends. */
  flush(): void {}

  stats(): HttpDissectorStats {
    return { ...this.counters, errors: { ...this.counters.errors } };
  }

  onData(c: TcpChunk): void {
    const conn = this.conn(c.stream);
    if (conn.opaque) return;
    const d = conn.dirs[c.dir];
    if (d.state === 'dead') return;
    if (!d.seen) {
      d.seen = true;
      d.midStream = c.midStream;
      d.pendingOffset = c.offset;
      if (c.offset > 0 || c.midStream) this.toResync(d, true);
    }
    d.marks.push([c.offset, c.firstSec, c.firstNsec, c.lastSec, c.lastNsec]);
    const add = Buffer.from(c.buf.buffer, c.buf.byteOffset + c.start, c.length);
    // Parse straight from the caller's bytes when nothing is pending; copy only what is left.
    const view = d.pending.length === 0;
    d.pending = view ? add : Buffer.concat([d.pending, add]);
    this.run(conn, c.stream, c.dir);
    if (view && d.pending.length > 0 && d.pending.buffer === add.buffer) d.pending = Buffer.from(d.pending);
  }

  onGap(g: TcpGap): void {
    const conn = this.conn(g.stream);
    const d = conn.dirs[g.dir];
    if (!d.seen) {
      d.seen = true;
      d.pendingOffset = g.offset;
    }
    if (conn.opaque || d.state === 'dead') return;
    let left = g.length;
    const msg = d.msg;
    if (msg && d.state === 'body-length') {
      // The hole starts inside a Content-Length body: skip its part of it and keep the message.
      const inside = Math.min(left, d.remaining);
      d.remaining -= inside;
      msg.bodySize += inside;
      msg.cut = true;
      msg.error = 'dissection';
      left -= inside;
      if (d.remaining === 0) this.finishMessage(conn, g.stream, g.dir, this.timeAt(d, g.offset - 1, true));
      if (left === 0) {
        // The hole ended inside or exactly at the end of this message: nothing else was lost.
        d.pendingOffset = g.offset + g.length;
        return;
      }
    } else if (msg) {
      msg.error = 'dissection';
      msg.cut = true;
      if (d.state === 'until-close') {
        msg.bodySize += left;
        d.pendingOffset = g.offset + g.length;
        return;
      }
      this.finishMessage(conn, g.stream, g.dir, this.timeAt(d, g.offset - 1, true));
    }
    // Bytes before the hole that were not a whole message are lost with it.
    d.pending = Buffer.alloc(0);
    d.marks = [];
    d.pendingOffset = g.offset + g.length;
    this.toResync(d, true);
  }

  onEnd(e: TcpEnd): void {
    const conn = this.conns.get(e.stream);
    if (!conn) return;
    const d = conn.dirs[e.dir];
    d.ended = true;
    if (!conn.opaque && d.msg) {
      const last = this.timeAt(d, d.pendingOffset + d.pending.length - 1, true);
      if (d.state !== 'until-close') {
        d.msg.error = 'dissection';
        d.msg.cut = true;
      }
      this.finishMessage(conn, e.stream, e.dir, last);
    }
    if (e.closed) {
      for (const x of conn.exchanges) if (!x.responseDone) x.unanswered = true;
      this.emitReady(conn, e.stream);
      this.conns.delete(e.stream);
      // Only a stream that ended by idle time, eviction or flush can start again under its id.
      if (e.reason === 'fin' || e.reason === 'rst') this.nextIndex.delete(e.stream);
    }
  }

  private conn(stream: number): Conn {
    let c = this.conns.get(stream);
    if (!c) {
      c = { dirs: [newDir(), newDir()], exchanges: [], http: false, opaque: false };
      this.conns.set(stream, c);
    }
    return c;
  }

  private toResync(d: Dir, afterGap: boolean): void {
    d.state = 'resync';
    d.msg = null;
    if (afterGap) d.afterGap = true;
  }

  /** Capture time of the chunk holding stream offset `off` (its first or last packet's). */
  private timeAt(d: Dir, off: number, last: boolean): HttpTime {
    let m = d.marks[0];
    for (const x of d.marks) {
      if (x[0]! > off) break;
      m = x;
    }
    if (!m) return { sec: 0, nsec: 0 };
    return last ? { sec: m[3]!, nsec: m[4]! } : { sec: m[1]!, nsec: m[2]! };
  }

  private consume(d: Dir, n: number): void {
    d.pending = d.pending.subarray(n);
    d.pendingOffset += n;
    // Keep the mark covering the last consumed byte (a message's end time) and the ones after.
    let i = 0;
    while (i + 1 < d.marks.length && d.marks[i + 1]![0]! < d.pendingOffset) i++;
    if (i > 0) d.marks.splice(0, i);
    if (d.pending.length === 0) d.pending = Buffer.alloc(0);
  }

  private run(conn: Conn, stream: number, dir: TcpDirection): void {
    const d = conn.dirs[dir];
    while (!conn.opaque && d.pending.length > 0) {
      const buf = d.pending;
      switch (d.state) {
        case 'dead':
          d.pending = Buffer.alloc(0);
          return;
        case 'unknown':
        case 'resync':
        case 'start': {
          if (d.state !== 'start' && !this.findStart(conn, d, dir)) return;
          const head = d.pending; // findStart may have consumed
          const he = headerEnd(head, 0, head.length);
          if (he < 0) {
            if (head.length > this.maxHeader) {
              this.counters.skippedBytes += head.length;
              this.consume(d, head.length);
              this.toResync(d, true);
            }
            return;
          }
          if (!this.startMessage(conn, stream, dir, head, he)) {
            this.consume(d, Math.max(1, lineEnd(head, 0, head.length) + 1));
            this.toResync(d, true);
          }
          break;
        }
        case 'body-length': {
          const n = Math.min(d.remaining, buf.length);
          this.body(d.msg!, buf, 0, n);
          d.remaining -= n;
          this.consume(d, n);
          if (d.remaining === 0) this.finishMessage(conn, stream, dir, this.timeAt(d, d.pendingOffset - 1, true));
          break;
        }
        case 'until-close':
          this.body(d.msg!, buf, 0, buf.length);
          this.consume(d, buf.length);
          break;
        case 'chunk-size': {
          const nl = lineEnd(buf, 0, buf.length);
          if (nl < 0) {
            if (buf.length > MAX_START_LINE) this.badChunk(conn, stream, dir);
            return;
          }
          const text = lineText(buf, 0, nl).split(';')[0]!.trim();
          if (!/^[0-9a-fA-F]{1,12}$/.test(text)) {
            this.badChunk(conn, stream, dir);
            break;
          }
          this.consume(d, nl + 1);
          d.remaining = parseInt(text, 16);
          d.state = d.remaining === 0 ? 'trailers' : 'chunk-data';
          break;
        }
        case 'chunk-data': {
          const n = Math.min(d.remaining, buf.length);
          this.body(d.msg!, buf, 0, n);
          d.remaining -= n;
          this.consume(d, n);
          if (d.remaining === 0) d.state = 'chunk-crlf';
          break;
        }
        case 'chunk-crlf': {
          const nl = lineEnd(buf, 0, buf.length);
          if (nl < 0) {
            if (buf.length > 2) this.badChunk(conn, stream, dir);
            return;
          }
          if (lineText(buf, 0, nl) !== '') {
            this.badChunk(conn, stream, dir);
            break;
          }
          this.consume(d, nl + 1);
          d.state = 'chunk-size';
          break;
        }
        case 'trailers': {
          const nl = lineEnd(buf, 0, buf.length);
          if (nl < 0) {
            if (buf.length > this.maxHeader) this.badChunk(conn, stream, dir);
            return;
          }
          const line = lineText(buf, 0, nl);
          this.consume(d, nl + 1);
          if (line === '') this.finishMessage(conn, stream, dir, this.timeAt(d, d.pendingOffset - 1, true));
          else {
            const colon = line.indexOf(':');
            if (colon > 0) d.msg!.headers.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
          }
          break;
        }
        default: {
          const never: never = d.state;
          throw new Error(`unknown state ${String(never)}`);
        }
      }
    }
  }

  private badChunk(conn: Conn, stream: number, dir: TcpDirection): void {
    const d = conn.dirs[dir];
    d.msg!.error = 'dissection';
    this.finishMessage(conn, stream, dir, this.timeAt(d, d.pendingOffset - 1, true));
    this.toResync(d, false);
  }

  /**
   * In `unknown` or `resync`: positions `pending` at the next start line this direction may
   * carry. Returns false (keeping at most a partial line) when there is none yet; an `unknown`
   * direction whose first line is not a start line is not HTTP.
   */
  private findStart(conn: Conn, d: Dir, dir: TcpDirection): boolean {
    const other = conn.dirs[dir === 0 ? 1 : 0].kind;
    const want: Kind | null = d.kind ?? (other === 'request' ? 'response' : other === 'response' ? 'request' : null);
    const buf = d.pending;
    if (d.state === 'unknown' && !couldStart(buf)) return this.notHttp(d);
    let pos = 0;
    while (pos < buf.length) {
      const nl = lineEnd(buf, pos, buf.length);
      if (nl < 0) {
        if (buf.length - pos > MAX_START_LINE) {
          if (d.state === 'unknown') return this.notHttp(d);
          this.skip(d, buf.length);
        } else if (pos > 0) this.skip(d, pos);
        return false;
      }
      const line = lineText(buf, pos, nl);
      const kind: Kind | null = (want !== 'response' && REQUEST_LINE.test(line) ? 'request' : null) ?? (want !== 'request' && STATUS_LINE.test(line) ? 'response' : null);
      if (kind) {
        if (pos > 0 && !this.skip(d, pos)) return false;
        d.kind = kind;
        d.state = 'start';
        if (!conn.http) {
          conn.http = true;
          this.counters.httpStreams++;
        }
        return true;
      }
      if (d.state === 'unknown') return this.notHttp(d);
      pos = nl + 1;
    }
    this.skip(d, pos);
    return false;
  }

  private notHttp(d: Dir): false {
    d.state = 'dead';
    d.pending = Buffer.alloc(0);
    d.marks = [];
    return false;
  }

  /** Drops n bytes while looking for a start line; false when the direction was given up. */
  private skip(d: Dir, n: number): boolean {
    if (d.kind === null && (d.scanned += n) > MAX_UNKNOWN_SCAN) return this.notHttp(d);
    this.counters.resyncs++;
    this.counters.skippedBytes += n;
    this.consume(d, n);
    return true;
  }

  /** Parses the header block buf[0, end) and starts the message; false when it is not one. */
  private startMessage(conn: Conn, stream: number, dir: TcpDirection, buf: Buffer, end: number): boolean {
    const d = conn.dirs[dir];
    // The start line, then each header line, read straight from the bytes (latin1, as HTTP/1.x
    // field bytes are): no split of the whole block into strings.
    const firstEnd = lineEnd(buf, 0, end);
    const first = buf.toString('latin1', 0, firstEnd > 0 && buf[firstEnd - 1] === 0x0d ? firstEnd - 1 : Math.max(0, firstEnd));
    const msg: Message = {
      kind: d.kind!,
      method: '',
      target: '',
      version: '',
      status: 0,
      reason: '',
      headers: [],
      start: this.timeAt(d, d.pendingOffset, false),
      end: null,
      endOffset: 0,
      parts: [],
      kept: 0,
      bodySize: 0,
      cut: false,
      encoding: '',
      error: undefined,
    };
    if (d.kind === 'request') {
      const m = REQUEST_LINE.exec(first);
      if (!m) return false;
      [, msg.method, msg.target, msg.version] = m as unknown as [string, string, string, string];
    } else {
      const m = STATUS_LINE.exec(first);
      if (!m) return false;
      msg.version = m[1]!;
      msg.status = Number(m[2]);
      msg.reason = m[3] ?? '';
    }
    let pos = firstEnd + 1;
    while (pos < end) {
      let nl = lineEnd(buf, pos, end);
      if (nl < 0) nl = end;
      let stop = nl;
      if (stop > pos && buf[stop - 1] === 0x0d) stop--;
      if (stop > pos) {
        const c0 = buf[pos];
        const last = msg.headers[msg.headers.length - 1];
        if ((c0 === 0x20 || c0 === 0x09) && last) {
          // obs-fold: a continuation of the previous field's value.
          last[1] = `${last[1]} ${buf.toString('latin1', pos, stop).trim()}`;
        } else {
          let colon = pos;
          while (colon < stop && buf[colon] !== 0x3a) colon++;
          if (colon === stop || colon === pos) msg.error = 'dissection';
          else {
            let vs = colon + 1;
            let ve = stop;
            while (vs < ve && (buf[vs] === 0x20 || buf[vs] === 0x09)) vs++;
            while (ve > vs && (buf[ve - 1] === 0x20 || buf[ve - 1] === 0x09)) ve--;
            msg.headers.push([buf.toString('latin1', pos, colon), buf.toString('latin1', vs, ve)]);
          }
        }
      }
      pos = nl + 1;
    }
    msg.encoding = header(msg.headers, 'content-encoding') ?? '';
    this.consume(d, end);
    d.msg = msg;

    // Pair and decide the body.
    let method = '';
    if (msg.kind === 'request') {
      conn.exchanges.push({ request: msg, response: null, requestDone: false, responseDone: false, unanswered: false });
    } else if (msg.status >= 200 || msg.status < 100 || msg.status === 101) {
      method = this.pairResponse(conn, msg, d.afterGap);
      d.afterGap = false;
    }
    const te = header(msg.headers, 'transfer-encoding');
    const cl = header(msg.headers, 'content-length');
    const noBody = msg.kind === 'response' && (method === 'HEAD' || (msg.status >= 100 && msg.status < 200) || msg.status === 204 || msg.status === 304);
    if (noBody) {
      this.finishMessage(conn, stream, dir, this.timeAt(d, d.pendingOffset - 1, true));
    } else if (te !== undefined && /(^|,)\s*chunked\s*$/i.test(te)) {
      d.state = 'chunk-size';
    } else if (cl !== undefined) {
      const n = /^\d{1,15}$/.test(cl.trim()) ? Number(cl.trim()) : NaN;
      if (Number.isNaN(n)) {
        msg.error = 'dissection';
        this.finishMessage(conn, stream, dir, this.timeAt(d, d.pendingOffset - 1, true));
        this.toResync(d, false);
        return true;
      }
      d.remaining = n;
      d.state = 'body-length';
      if (n === 0) this.finishMessage(conn, stream, dir, this.timeAt(d, d.pendingOffset - 1, true));
    } else if (msg.kind === 'response') {
      d.state = 'until-close';
    } else {
      this.finishMessage(conn, stream, dir, this.timeAt(d, d.pendingOffset - 1, true));
    }
    return true;
  }

  /** Attaches a final response to its request; returns the request method ('' when none). */
  private pairResponse(conn: Conn, msg: Message, afterGap: boolean): string {
    const waiting = conn.exchanges.filter((x) => x.request && !x.response && !x.unanswered);
    let x: Exchange | undefined = waiting[0];
    if (afterGap && waiting.length > 1) {
      // Responses may have been lost in the gap: take the latest request sent before this
      // response started; the earlier ones will not get theirs.
      const before = waiting.filter((w) => !after(w.request!.start, msg.start));
      x = before[before.length - 1] ?? waiting[0];
      for (const w of waiting) {
        if (w === x) break;
        w.unanswered = true;
      }
    }
    if (x && after(x.request!.start, msg.start)) x = undefined; // a response cannot precede its request
    if (!x) {
      x = { request: null, response: msg, requestDone: true, responseDone: false, unanswered: false };
      // Keep emission in time order: before the requests that started after it.
      const i = conn.exchanges.findIndex((e) => !e.responseDone && e.request && after(e.request.start, msg.start));
      if (i < 0) conn.exchanges.push(x);
      else conn.exchanges.splice(i, 0, x);
      return '';
    }
    x.response = msg;
    return x.request!.method;
  }

  private body(msg: Message, buf: Uint8Array, from: number, to: number): void {
    const n = to - from;
    msg.bodySize += n;
    const keep = Math.min(n, this.maxBody - msg.kept);
    if (keep > 0 && !msg.cut) {
      msg.parts.push(Buffer.from(buf.subarray(from, from + keep)));
      msg.kept += keep;
    }
    if (keep < n) msg.cut = true;
  }

  private finishMessage(conn: Conn, stream: number, dir: TcpDirection, end: HttpTime): void {
    const d = conn.dirs[dir];
    const msg = d.msg;
    d.msg = null;
    if (d.state !== 'resync' && d.state !== 'dead') d.state = 'start';
    if (!msg) return;
    msg.end = end;
    msg.endOffset = d.pendingOffset;
    if (msg.kind === 'request') {
      const x = conn.exchanges.find((e) => e.request === msg);
      if (x) x.requestDone = true;
    } else {
      if (msg.status >= 100 && msg.status < 200 && msg.status !== 101) return; // interim
      const x = conn.exchanges.find((e) => e.response === msg);
      if (x) {
        x.responseDone = true;
        const upgrade = msg.status === 101 || (x.request?.method === 'CONNECT' && msg.status >= 200 && msg.status < 300);
        if (upgrade) {
          conn.opaque = true;
          for (const e of conn.exchanges) e.requestDone = true;
          if (msg.status === 101 && x.request && this.onUpgrade) {
            this.emitReady(conn, stream);
            this.handOver(conn, stream, dir, x.request, msg);
            return;
          }
        }
      }
    }
    this.emitReady(conn, stream);
  }

  /** Tells `onUpgrade` where the new protocol starts, with the bytes already held past it. */
  private handOver(conn: Conn, stream: number, dir: TcpDirection, req: Message, res: Message): void {
    const boundary: [number, number] = [0, 0];
    const rest: [HttpRest | null, HttpRest | null] = [null, null];
    boundary[dir] = res.endOffset;
    boundary[dir === 0 ? 1 : 0] = req.endOffset;
    for (const i of [0, 1] as const) {
      const d = conn.dirs[i];
      const skip = boundary[i] - d.pendingOffset;
      if (skip >= 0 && skip < d.pending.length) {
        const t = this.timeAt(d, boundary[i], false);
        rest[i] = { offset: boundary[i], bytes: Buffer.from(d.pending.subarray(skip)), sec: t.sec, nsec: t.nsec };
      }
      d.pending = Buffer.alloc(0);
      d.marks = [];
    }
    const protocol = (header(res.headers, 'upgrade') ?? header(req.headers, 'upgrade') ?? '').trim().toLowerCase();
    this.onUpgrade!({ stream, protocol, method: req.method, path: req.target, host: header(req.headers, 'host') ?? '', requestHeaders: req.headers, responseHeaders: res.headers, firstIndex: this.nextIndex.get(stream) ?? 0, boundary, rest });
  }

  /** Emits the exchanges at the head of the queue that are complete. */
  private emitReady(conn: Conn, stream: number): void {
    while (conn.exchanges.length > 0) {
      const x = conn.exchanges[0]!;
      const allEnded = conn.dirs.every((d) => d.ended);
      const closing = allEnded || (x.unanswered && x.requestDone);
      if (!(x.requestDone && x.responseDone) && !closing) return;
      conn.exchanges.shift();
      this.emitExchange(x, stream);
    }
  }

  private emitExchange(x: Exchange, stream: number): void {
    const req = x.request;
    const res = x.responseDone ? x.response : null;
    const index = this.nextIndex.get(stream) ?? 0;
    this.nextIndex.set(stream, index + 1);
    const target = req?.target ?? '';
    const host = req ? (header(req.headers, 'host') ?? '') : '';
    let path = target;
    let url = host + target;
    const abs = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/([^/?#]*)(.*)$/.exec(target);
    if (abs) {
      url = target.replace(/^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//, '');
      path = abs[2] === '' ? '/' : abs[2]!;
    }
    let error: EntryError | undefined;
    if (!req || !res) error = 'pair-not-found';
    else if (req.error ?? res.error) error = 'dissection';
    else if (!x.requestDone) error = 'dissection';
    const t0 = req?.start ?? res?.start ?? { sec: 0, nsec: 0 };
    const entry: HttpEntry = {
      protocol: 'http',
      stream,
      index,
      timestamp: t0.sec * 1e6 + Math.floor(t0.nsec / 1000),
      elapsed_time: req && res ? Math.round(((res.start.sec - req.start.sec) * 1e9 + (res.start.nsec - req.start.nsec)) / 1000) : 0,
      method: req?.method ?? '',
      path,
      url,
      status_code: res?.status ?? 0,
      request: req ? this.entryMessage(req) : null,
      response: res ? this.entryMessage(res) : null,
      version: req?.version ?? res?.version ?? '',
      status_text: res?.reason ?? '',
      times: { request_start: req?.start ?? null, request_end: req?.end ?? null, response_start: res?.start ?? null, response_end: res?.end ?? null },
    };
    if (res && res.status >= 400) entry.failure = `HTTP ${res.status}${res.reason ? ` ${res.reason}` : ''}`;
    if (error) {
      entry.error = error;
      this.counters.errors[error]++;
    }
    this.counters.entries++;
    this.emit(entry);
  }

  private entryMessage(m: Message): EntryMessage {
    let body: Uint8Array | null = m.kept > 0 ? Buffer.concat(m.parts) : null;
    let truncated = m.cut;
    if (body && m.encoding !== '') {
      const decoded = decodeBody(body as Buffer, m.encoding, this.maxBody, m.cut);
      if (decoded) {
        body = decoded.body;
        truncated = decoded.truncated;
      }
    }
    return { headers: m.headers, body, body_size: m.bodySize, truncated };
  }
}

/** a is strictly later than b. */
function after(a: HttpTime, b: HttpTime): boolean {
  return a.sec > b.sec || (a.sec === b.sec && a.nsec > b.nsec);
}
