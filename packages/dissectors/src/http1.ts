import zlib from 'node:zlib';
import type { TcpChunk, TcpDirection, TcpEnd, TcpGap } from '@kubeshark-mcp/capture';
import type { Entry, EntryError, EntryMessage, HeaderList } from './entry';
import { NO_BYTES, ownRest, takeBytes } from './pending';
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
  /** Kept body bytes: one copy when the body came in one piece, else the pieces (joined once, at the end). */
  parts: Buffer[];
  kept: number;
  bodySize: number;
  /** Wire bytes were not all kept (size limit or a hole). */
  cut: boolean;
  encoding: string;
  error: EntryError | undefined;
  /** Index in `headers` of the first Host field (-1: none), found while parsing. */
  hostAt: number;
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
  /**
   * Unconsumed bytes: `buf[pos, end)`, and the stream offset of the first. During `onData`
   * `buf` may be the caller's chunk; what is left after it is copied (`buf` is then ours).
   */
  buf: Buffer;
  pos: number;
  end: number;
  pendingOffset: number;
  /**
   * Capture times of the chunks over the unconsumed bytes, flat, MARK numbers each from
   * `markHead`: stream offset, first sec, nsec, last sec, nsec (no array per chunk).
   */
  marks: number[];
  markHead: number;
  /** The last time `timeAt` made: the next one with the same value is this object (times are never changed). */
  time: HttpTime | null;
  /**
   * The header block being looked for at `pos`: bytes already scanned without finding its end,
   * and the line feeds found in them (offsets from `pos`), so a block arriving in many segments
   * is scanned once, and its lines are not looked for again when it is parsed.
   */
  headScanned: number;
  lineFeeds: number[];
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
  buf: NO_BYTES,
  pos: 0,
  end: 0,
  pendingOffset: 0,
  marks: [],
  markHead: 0,
  time: null,
  headScanned: 0,
  lineFeeds: [],
  msg: null,
  remaining: 0,
  afterGap: false,
  midStream: false,
  scanned: 0,
  seen: false,
  ended: false,
});

/** Numbers per entry of `Dir.marks`. */
const MARK = 5;
/** Marks dropped from the front of `Dir.marks` at once (amortised). */
const MARK_COMPACT = 64 * MARK;

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

function lineEnd(buf: Uint8Array, from: number, end: number): number {
  for (let i = from; i < end; i++) if (buf[i] === 0x0a) return i;
  return -1;
}

function lineText(buf: Uint8Array, from: number, nl: number): string {
  const e = nl > from && buf[nl - 1] === 0x0d ? nl - 1 : nl;
  return Buffer.from(buf.buffer, buf.byteOffset + from, e - from).toString('latin1');
}

const INTERN_SLOTS = 4096; // a power of two
const INTERN_MAX = 48;

/**
 * Short field strings and header fields seen before on this dissector, by a hash of their
 * bytes: header names and most values repeat from message to message (HPACK's premise), and a
 * hit costs a hash and a compare instead of new strings and a new [name, value] pair that the
 * entry store would keep alive. Strings are immutable and shared fields are frozen, so sharing
 * is invisible to readers; a collision only replaces the slot.
 */
class FieldInterner {
  private readonly strings: (string | undefined)[] = new Array<string | undefined>(INTERN_SLOTS).fill(undefined);
  private readonly fields: ([string, string] | undefined)[] = new Array<[string, string] | undefined>(INTERN_SLOTS).fill(undefined);
  /** Slot of the last string `text` returned (-1: not interned). */
  private slot = -1;

  /** buf[from, to) as latin1 (what HTTP/1.x field bytes are), interned when short. */
  text(buf: Buffer, from: number, to: number): string {
    const n = to - from;
    if (n <= 0) {
      this.slot = 0;
      return '';
    }
    if (n > INTERN_MAX) {
      this.slot = -1;
      return buf.toString('latin1', from, to);
    }
    let h = n;
    for (let i = from; i < to; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
    const slot = (h ^ (h >>> 13)) & (INTERN_SLOTS - 1);
    this.slot = slot;
    const s = this.strings[slot];
    if (s !== undefined && s.length === n) {
      let i = 0;
      while (i < n && s.charCodeAt(i) === buf[from + i]) i++;
      if (i === n) return s;
    }
    const t = buf.toString('latin1', from, to);
    this.strings[slot] = t;
    return t;
  }

  /** The header field buf[ns, ne): buf[vs, ve), shared (frozen) when both strings are interned. */
  field(buf: Buffer, ns: number, ne: number, vs: number, ve: number): [string, string] {
    const name = this.text(buf, ns, ne);
    const a = this.slot;
    const value = this.text(buf, vs, ve);
    const b = this.slot;
    if (a < 0 || b < 0) return [name, value];
    const k = (Math.imul(a, 0x9e3779b1) ^ b) & (INTERN_SLOTS - 1);
    const f = this.fields[k];
    if (f !== undefined && f[0] === name && f[1] === value) return f;
    const made = Object.freeze([name, value]) as [string, string];
    this.fields[k] = made;
    return made;
  }
}

/** buf[from, from + name.length) is `name` (lower-case ASCII) without regard to ASCII case. */
function isName(buf: Buffer, from: number, to: number, name: string): boolean {
  if (to - from !== name.length) return false;
  for (let i = 0; i < name.length; i++) {
    const c = buf[from + i]!;
    if ((c >= 0x41 && c <= 0x5a ? c | 0x20 : c) !== name.charCodeAt(i)) return false;
  }
  return true;
}

/** tchar of RFC 9110 (the method token of REQUEST_LINE). */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;
/** Bytes that are `\s` for a regular expression over latin1 text. */
const isSpace = (c: number): boolean => c === 0x20 || (c >= 0x09 && c <= 0x0d) || c === 0xa0;

/** buf[at, at + 8) is `HTTP/1.0` or `HTTP/1.1`. */
function isVersion(buf: Buffer, at: number): boolean {
  return (
    buf[at] === 0x48 &&
    buf[at + 1] === 0x54 &&
    buf[at + 2] === 0x54 &&
    buf[at + 3] === 0x50 &&
    buf[at + 4] === 0x2f &&
    buf[at + 5] === 0x31 &&
    buf[at + 6] === 0x2e &&
    (buf[at + 7] === 0x30 || buf[at + 7] === 0x31)
  );
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

/** A Content-Length value: digits only (at most 15), else NaN. */
function contentLength(v: string): number {
  const len = v.length;
  if (len > 0 && len <= 15) {
    let n = 0;
    let i = 0;
    for (; i < len; i++) {
      const c = v.charCodeAt(i) - 0x30;
      if (c < 0 || c > 9) break;
      n = n * 10 + c;
    }
    if (i === len) return n;
  }
  const t = v.trim();
  return /^\d{1,15}$/.test(t) ? Number(t) : NaN;
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
  private readonly interner = new FieldInterner();
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
    d.marks.push(c.offset, c.firstSec, c.firstNsec, c.lastSec, c.lastNsec);
    const src = c.buf instanceof Buffer ? c.buf : Buffer.from(c.buf.buffer, c.buf.byteOffset, c.buf.byteLength);
    // Parse straight from the caller's bytes when nothing is pending; copy only what is left.
    takeBytes(d, src, c.start, c.length);
    this.run(conn, c.stream, c.dir);
    if (d.buf === src && !ownRest(d)) this.clearPending(d);
  }

  /** Drops the unconsumed bytes and the time marks. */
  private dropPending(d: Dir): void {
    this.clearPending(d);
    d.marks.length = 0;
    d.markHead = 0;
  }

  private clearPending(d: Dir): void {
    d.buf = NO_BYTES;
    d.pos = 0;
    d.end = 0;
    d.headScanned = 0;
    d.lineFeeds.length = 0;
  }

  /**
   * Finds the end of the header block at `pos` (just past the empty line: LF LF or LF CR LF),
   * or -1; resumes where the last call stopped and records the line feeds on the way.
   */
  private headerEnd(d: Dir): number {
    const buf = d.buf;
    const from = d.pos;
    const end = d.end;
    const lfs = d.lineFeeds;
    let i = from + d.headScanned;
    for (; i < end; i++) {
      if (buf[i] !== 0x0a) continue;
      if (i + 1 >= end) break; // undecided until the next byte comes
      const next = buf[i + 1];
      if (next === 0x0a) {
        lfs.push(i - from, i + 1 - from);
        return i + 2;
      }
      if (next === 0x0d) {
        if (i + 2 >= end) break;
        if (buf[i + 2] === 0x0a) {
          lfs.push(i - from, i + 2 - from);
          return i + 3;
        }
      }
      lfs.push(i - from);
    }
    d.headScanned = i - from;
    return -1;
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
    this.dropPending(d);
    d.pendingOffset = g.offset + g.length;
    this.toResync(d, true);
  }

  onEnd(e: TcpEnd): void {
    const conn = this.conns.get(e.stream);
    if (!conn) return;
    const d = conn.dirs[e.dir];
    d.ended = true;
    if (!conn.opaque && d.msg) {
      const last = this.timeAt(d, d.pendingOffset + (d.end - d.pos) - 1, true);
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
    const marks = d.marks;
    let m = d.markHead;
    if (m >= marks.length) return { sec: 0, nsec: 0 };
    for (let x = m + MARK; x < marks.length && marks[x]! <= off; x += MARK) m = x;
    const sec = last ? marks[m + 3]! : marks[m + 1]!;
    const nsec = last ? marks[m + 4]! : marks[m + 2]!;
    // A message's first and last byte usually share a packet: one object for both.
    const t = d.time;
    if (t !== null && t.sec === sec && t.nsec === nsec) return t;
    return (d.time = { sec, nsec });
  }

  private consume(d: Dir, n: number): void {
    d.pos += n;
    d.pendingOffset += n;
    d.headScanned = 0;
    d.lineFeeds.length = 0;
    // Keep the mark covering the last consumed byte (a message's end time) and the ones after.
    const marks = d.marks;
    let h = d.markHead;
    while (h + MARK < marks.length && marks[h + MARK]! < d.pendingOffset) h += MARK;
    if (h >= MARK_COMPACT) {
      marks.splice(0, h);
      h = 0;
    }
    d.markHead = h;
    if (d.pos >= d.end) this.clearPending(d);
  }

  private run(conn: Conn, stream: number, dir: TcpDirection): void {
    const d = conn.dirs[dir];
    while (!conn.opaque && d.end > d.pos) {
      const buf = d.buf;
      const pos = d.pos;
      const end = d.end;
      switch (d.state) {
        case 'dead':
          this.clearPending(d);
          return;
        case 'unknown':
        case 'resync':
        case 'start': {
          if (d.state !== 'start' && !this.findStart(conn, d, dir)) return;
          const from = d.pos; // findStart may have consumed
          const he = this.headerEnd(d);
          if (he < 0) {
            const n = d.end - from;
            if (n > this.maxHeader) {
              this.counters.skippedBytes += n;
              this.consume(d, n);
              this.toResync(d, true);
            }
            return;
          }
          const head = d.buf;
          if (!this.startMessage(conn, stream, dir, head, from, he, d.lineFeeds)) {
            this.consume(d, Math.max(1, lineEnd(head, from, d.end) + 1 - from));
            this.toResync(d, true);
          }
          break;
        }
        case 'body-length': {
          const n = Math.min(d.remaining, end - pos);
          this.body(d.msg!, buf, pos, pos + n);
          d.remaining -= n;
          this.consume(d, n);
          if (d.remaining === 0) this.finishMessage(conn, stream, dir, this.timeAt(d, d.pendingOffset - 1, true));
          break;
        }
        case 'until-close':
          this.body(d.msg!, buf, pos, end);
          this.consume(d, end - pos);
          break;
        case 'chunk-size': {
          const nl = lineEnd(buf, pos, end);
          if (nl < 0) {
            if (end - pos > MAX_START_LINE) this.badChunk(conn, stream, dir);
            return;
          }
          const text = lineText(buf, pos, nl).split(';')[0]!.trim();
          if (!/^[0-9a-fA-F]{1,12}$/.test(text)) {
            this.badChunk(conn, stream, dir);
            break;
          }
          this.consume(d, nl + 1 - pos);
          d.remaining = parseInt(text, 16);
          d.state = d.remaining === 0 ? 'trailers' : 'chunk-data';
          break;
        }
        case 'chunk-data': {
          const n = Math.min(d.remaining, end - pos);
          this.body(d.msg!, buf, pos, pos + n);
          d.remaining -= n;
          this.consume(d, n);
          if (d.remaining === 0) d.state = 'chunk-crlf';
          break;
        }
        case 'chunk-crlf': {
          const nl = lineEnd(buf, pos, end);
          if (nl < 0) {
            if (end - pos > 2) this.badChunk(conn, stream, dir);
            return;
          }
          if (lineText(buf, pos, nl) !== '') {
            this.badChunk(conn, stream, dir);
            break;
          }
          this.consume(d, nl + 1 - pos);
          d.state = 'chunk-size';
          break;
        }
        case 'trailers': {
          const nl = lineEnd(buf, pos, end);
          if (nl < 0) {
            if (end - pos > this.maxHeader) this.badChunk(conn, stream, dir);
            return;
          }
          const line = lineText(buf, pos, nl);
          this.consume(d, nl + 1 - pos);
          if (line === '') this.finishMessage(conn, stream, dir, this.timeAt(d, d.pendingOffset - 1, true));
          else {
            const colon = line.indexOf(':');
            if (colon > 0) {
              const m = d.msg!;
              const name = line.slice(0, colon);
              if (m.hostAt < 0 && name.length === 4 && name.toLowerCase() === 'host') m.hostAt = m.headers.length;
              m.headers.push([name, line.slice(colon + 1).trim()]);
            }
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
   * In `unknown` or `resync`: positions the unconsumed bytes at the next start line this
   * direction may carry. Returns false (keeping at most a partial line) when there is none
   * yet; an `unknown` direction whose first line is not a start line is not HTTP.
   */
  private findStart(conn: Conn, d: Dir, dir: TcpDirection): boolean {
    const other = conn.dirs[dir === 0 ? 1 : 0].kind;
    const want: Kind | null = d.kind ?? (other === 'request' ? 'response' : other === 'response' ? 'request' : null);
    const buf = d.buf;
    const from = d.pos;
    const end = d.end;
    if (d.state === 'unknown' && !couldStart(buf.subarray(from, end))) return this.notHttp(d);
    let pos = from;
    while (pos < end) {
      const nl = lineEnd(buf, pos, end);
      if (nl < 0) {
        if (end - pos > MAX_START_LINE) {
          if (d.state === 'unknown') return this.notHttp(d);
          this.skip(d, end - from);
        } else if (pos > from) this.skip(d, pos - from);
        return false;
      }
      const line = lineText(buf, pos, nl);
      const kind: Kind | null = (want !== 'response' && REQUEST_LINE.test(line) ? 'request' : null) ?? (want !== 'request' && STATUS_LINE.test(line) ? 'response' : null);
      if (kind) {
        if (pos > from && !this.skip(d, pos - from)) return false;
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
    this.skip(d, pos - from);
    return false;
  }

  private notHttp(d: Dir): false {
    d.state = 'dead';
    this.dropPending(d);
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

  /**
   * Parses the start line of buf[from, end) as REQUEST_LINE or STATUS_LINE would, into `msg`
   * (from the bytes, no match arrays); false when it is not one.
   */
  private startLine(msg: Message, buf: Buffer, from: number, end: number): boolean {
    if (msg.kind === 'request') {
      // token SP non-space+ SP HTTP/1.x, nothing after.
      let i = from;
      while (i < end && TCHAR[buf[i]!] === 1) i++;
      if (i === from || i >= end || buf[i] !== 0x20) return false;
      const t0 = i + 1;
      let j = t0;
      while (j < end && !isSpace(buf[j]!)) j++;
      if (j === t0 || buf[j] !== 0x20 || end - (j + 1) !== 8 || !isVersion(buf, j + 1)) return false;
      msg.method = this.interner.text(buf, from, i);
      msg.target = this.interner.text(buf, t0, j);
      msg.version = this.interner.text(buf, j + 1, end);
      return true;
    }
    // HTTP/1.x SP 3DIGIT, then nothing or SP and a reason without CR.
    if (end - from < 12 || !isVersion(buf, from) || buf[from + 8] !== 0x20) return false;
    let status = 0;
    for (let i = from + 9; i < from + 12; i++) {
      const c = buf[i]!;
      if (c < 0x30 || c > 0x39) return false;
      status = status * 10 + (c - 0x30);
    }
    let reason = '';
    if (end > from + 12) {
      if (buf[from + 12] !== 0x20) return false;
      for (let i = from + 13; i < end; i++) if (buf[i] === 0x0d) return false;
      reason = this.interner.text(buf, from + 13, end);
    }
    msg.version = this.interner.text(buf, from, from + 8);
    msg.status = status;
    msg.reason = reason;
    return true;
  }

  /**
   * Parses the header block buf[from, end), whose line feeds are at `from + lfs[k]`, and starts
   * the message; false when it is not one.
   */
  private startMessage(conn: Conn, stream: number, dir: TcpDirection, buf: Buffer, from: number, end: number, lfs: readonly number[]): boolean {
    const d = conn.dirs[dir];
    // The start line, then each header line, read straight from the bytes (latin1, as HTTP/1.x
    // field bytes are): no split of the whole block into strings.
    const firstEnd = from + lfs[0]!;
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
      hostAt: -1,
    };
    if (!this.startLine(msg, buf, from, firstEnd > from && buf[firstEnd - 1] === 0x0d ? firstEnd - 1 : Math.max(from, firstEnd))) return false;
    const headers = msg.headers;
    let clAt = -1;
    let teAt = -1;
    let ceAt = -1;
    const lines = lfs.length;
    for (let k = 1; k < lines; k++) {
      const pos = from + lfs[k - 1]! + 1;
      const nl = from + lfs[k]!;
      let stop = nl;
      if (stop > pos && buf[stop - 1] === 0x0d) stop--;
      if (stop > pos) {
        const c0 = buf[pos];
        const last = headers[headers.length - 1];
        if ((c0 === 0x20 || c0 === 0x09) && last) {
          // obs-fold: a continuation of the previous field's value (a new pair: the last may be shared).
          headers[headers.length - 1] = [last[0], `${last[1]} ${buf.toString('latin1', pos, stop).trim()}`];
        } else {
          let colon = pos;
          while (colon < stop && buf[colon] !== 0x3a) colon++;
          if (colon === stop || colon === pos) msg.error = 'dissection';
          else {
            let vs = colon + 1;
            let ve = stop;
            while (vs < ve && (buf[vs] === 0x20 || buf[vs] === 0x09)) vs++;
            while (ve > vs && (buf[ve - 1] === 0x20 || buf[ve - 1] === 0x09)) ve--;
            // The fields the parser needs, found by length and bytes as they go by (first one wins).
            switch (colon - pos) {
              case 4:
                if (msg.hostAt < 0 && isName(buf, pos, colon, 'host')) msg.hostAt = headers.length;
                break;
              case 14:
                if (clAt < 0 && isName(buf, pos, colon, 'content-length')) clAt = headers.length;
                break;
              case 16:
                if (ceAt < 0 && isName(buf, pos, colon, 'content-encoding')) ceAt = headers.length;
                break;
              case 17:
                if (teAt < 0 && isName(buf, pos, colon, 'transfer-encoding')) teAt = headers.length;
                break;
            }
            headers.push(this.interner.field(buf, pos, colon, vs, ve));
          }
        }
      }
    }
    // Values are read after the block: an obs-fold line may have extended them.
    msg.encoding = ceAt >= 0 ? headers[ceAt]![1] : '';
    this.consume(d, end - from);
    d.msg = msg;

    // Pair and decide the body.
    let method = '';
    if (msg.kind === 'request') {
      conn.exchanges.push({ request: msg, response: null, requestDone: false, responseDone: false, unanswered: false });
    } else if (msg.status >= 200 || msg.status < 100 || msg.status === 101) {
      method = this.pairResponse(conn, msg, d.afterGap);
      d.afterGap = false;
    }
    const te = teAt >= 0 ? headers[teAt]![1] : undefined;
    const cl = clAt >= 0 ? headers[clAt]![1] : undefined;
    const noBody = msg.kind === 'response' && (method === 'HEAD' || (msg.status >= 100 && msg.status < 200) || msg.status === 204 || msg.status === 304);
    if (noBody) {
      this.finishMessage(conn, stream, dir, this.timeAt(d, d.pendingOffset - 1, true));
    } else if (te !== undefined && /(^|,)\s*chunked\s*$/i.test(te)) {
      d.state = 'chunk-size';
    } else if (cl !== undefined) {
      const n = contentLength(cl);
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
    let x: Exchange | undefined;
    for (const e of conn.exchanges) {
      if (e.request && !e.response && !e.unanswered) {
        x = e;
        break;
      }
    }
    const waiting = afterGap ? conn.exchanges.filter((e) => e.request && !e.response && !e.unanswered) : [];
    if (waiting.length > 1) {
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

  private body(msg: Message, buf: Buffer, from: number, to: number): void {
    const n = to - from;
    msg.bodySize += n;
    const keep = Math.min(n, this.maxBody - msg.kept);
    if (keep > 0 && !msg.cut) {
      const part = Buffer.allocUnsafe(keep);
      buf.copy(part, 0, from, from + keep);
      msg.parts.push(part);
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
      for (const e of conn.exchanges) {
        if (e.request === msg) {
          e.requestDone = true;
          break;
        }
      }
    } else {
      if (msg.status >= 100 && msg.status < 200 && msg.status !== 101) return; // interim
      let x: Exchange | undefined;
      for (const e of conn.exchanges) {
        if (e.response === msg) {
          x = e;
          break;
        }
      }
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
      if (skip >= 0 && skip < d.end - d.pos) {
        const t = this.timeAt(d, boundary[i], false);
        rest[i] = { offset: boundary[i], bytes: Buffer.from(d.buf.subarray(d.pos + skip, d.end)), sec: t.sec, nsec: t.nsec };
      }
      this.dropPending(d);
    }
    const protocol = (header(res.headers, 'upgrade') ?? header(req.headers, 'upgrade') ?? '').trim().toLowerCase();
    this.onUpgrade!({ stream, protocol, method: req.method, path: req.target, host: req.hostAt >= 0 ? req.headers[req.hostAt]![1] : '', requestHeaders: req.headers, responseHeaders: res.headers, firstIndex: this.nextIndex.get(stream) ?? 0, boundary, rest });
  }

  /** Emits the exchanges at the head of the queue that are complete. */
  private emitReady(conn: Conn, stream: number): void {
    while (conn.exchanges.length > 0) {
      const x = conn.exchanges[0]!;
      const allEnded = conn.dirs[0].ended && conn.dirs[1].ended;
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
    const host = req && req.hostAt >= 0 ? req.headers[req.hostAt]![1] : '';
    let path = target;
    let url = host + target;
    // An absolute-form target starts with a scheme (a letter); the usual origin-form starts with '/'.
    const abs = target.charCodeAt(0) === 0x2f ? null : /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/([^/?#]*)(.*)$/.exec(target);
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
    // One piece (the usual case) is already a copy of its own: no second copy.
    let body: Uint8Array | null = m.kept > 0 ? (m.parts.length === 1 ? m.parts[0]! : Buffer.concat(m.parts)) : null;
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
