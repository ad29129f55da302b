import zlib from 'node:zlib';
import type { TcpChunk, TcpDirection, TcpEnd, TcpGap } from '@kubeshark-mcp/capture';
import type { Entry, EntryError, EntryMessage, HeaderList } from './entry';
import type { StreamOpen, TcpDissector, TcpProtocol, Verdict } from './stream';

/**
 * WebSocket (RFC 6455) dissector for streams handed over after an HTTP/1.1 Upgrade. Pure.
 *
 * - Frames: FIN, RSV1 (per-message deflate), opcode, MASK, 7/16/64-bit payload length, masking
 *   key. Payloads are unmasked and kept as they arrive, up to `maxBodySize` per message; the
 *   rest is counted and skipped, so a length claim never allocates anything.
 * - Entries: one per data message (text or binary, after its fragments are reassembled;
 *   control frames may come between the fragments), one per close frame (each side's), and
 *   one per ping, paired with the first pong the other side sends after it (request = ping,
 *   response = pong, elapsed = round trip: the liveness a user asks about). A pong with no
 *   ping before it (unsolicited heartbeat) is an entry of its own. A data message is sent by
 *   one side and has no answer: it sits in `request` when the client sent it and in `response`
 *   when the server did; `ws_direction` says which.
 * - permessage-deflate (RFC 7692), when the upgrade response accepted it: a message with RSV1
 *   is inflated (raw DEFLATE with 00 00 ff ff appended, node:zlib, output bounded). With
 *   context takeover (the default), each direction's last 32 KiB of output is the dictionary
 *   of its next message, so later messages inflate too; if an earlier message could not be
 *   inflated whole (bound, gap), later ones that depend on it fail and are flagged
 *   `ws_inflate_failed` (body kept compressed).
 * - Gaps: framing is lost; a message in progress is flagged `dissection`, and the direction
 *   resumes at the first chunk that starts with a plausible frame header.
 */

/** A WebSocket message, close, ping or pong in the shared vocabulary. */
export interface WebSocketEntry extends Entry {
  protocol: 'ws';
  /** `text`, `binary`, `close`, `ping`, `pong` (the data opcode of a fragmented message). */
  ws_opcode: string;
  /** Who sent the message (the ping, for a ping/pong pair). */
  ws_direction: 'client' | 'server';
  /** Payload bytes on the wire over all fragments (compressed size for deflated messages). */
  ws_payload_size: number;
  /** Frames the message took (1 when not fragmented). */
  ws_fragments: number;
  /** Close status code (0 when none), and reason. */
  ws_close_code: number;
  ws_close_reason: string;
  /** The frames were masked (client frames must be; the body is shown unmasked). */
  ws_masked: boolean;
  /** The message was per-message-deflate compressed (the body is shown inflated). */
  ws_compressed: boolean;
  /**
   * A compressed message could not be inflated (corrupt, cut by a gap or by the bound on kept
   * input, or its window was lost): the body is the compressed bytes. A message whose output
   * only exceeds the bound is inflated up to it (`truncated`).
   */
  ws_inflate_failed: boolean;
}

export interface WebSocketDissectorOptions {
  /** Payload bytes kept per message (and inflated output bound). Default 64 KiB. */
  maxBodySize?: number;
}

export interface WebSocketDissectorStats {
  entries: number;
  errors: Record<EntryError, number>;
  resyncs: number;
  /** Frames that broke the RFC (unknown opcode, fragmented or oversized control frame, continuation without a message). */
  protocolErrors: number;
  /** Bytes held at the time of the call: pending input, messages in progress, inflate windows. */
  bufferedBytes: number;
}

/** Opcode names (RFC 6455 §5.2); 3-7 and 0xB-0xF are reserved. */
export const WS_OPCODES: Readonly<Record<number, string>> = { 0: 'continuation', 1: 'text', 2: 'binary', 8: 'close', 9: 'ping', 10: 'pong' };

/**
 * A WebSocket stream cannot be recognised from its first bytes: a frame header is two bytes of
 * flags and length that random binary matches easily, and the stream only becomes WebSocket
 * after an HTTP/1.1 `Upgrade: websocket` handshake, which the HTTP dissector sees. The router
 * hands such streams over by the Upgrade token, so `detect` never claims one.
 */
export const WEBSOCKET_PROTOCOL: TcpProtocol = {
  name: 'ws',
  ports: [],
  detect(_bytes: Uint8Array, _fromClient: boolean | undefined): Verdict {
    return 'no';
  },
};

interface Time {
  sec: number;
  nsec: number;
}

interface Message {
  opcode: number;
  dir: TcpDirection;
  start: Time;
  parts: Buffer[];
  kept: number;
  size: number;
  cut: boolean;
  fragments: number;
  masked: boolean;
  compressed: boolean;
  error: EntryError | undefined;
}

interface Frame {
  fin: boolean;
  rsv1: boolean;
  opcode: number;
  mask: Buffer | null;
  length: number;
  /** Payload bytes read so far (the unmasking position). */
  done: number;
  msg: Message;
}

interface Dir {
  pending: Buffer;
  offset: number;
  marks: number[][];
  frame: Frame | null;
  /** Data message being reassembled (fragments). */
  message: Message | null;
  lost: boolean;
  /** Inflate window: the last 32 KiB of this direction's inflated output; null when lost. */
  window: Buffer | null;
  /** A chunk of this direction was seen (the first one tells a mid-stream join). */
  seen: boolean;
}

interface Conn {
  clientDir: TcpDirection | undefined;
  path: string;
  url: string;
  deflate: boolean;
  /** `*_no_context_takeover` negotiated, per direction (client, server). */
  noTakeover: { client: boolean; server: boolean };
  requestHeaders: HeaderList;
  dirs: [Dir, Dir];
  pings: { msg: Message; index: number }[];
  nextIndex: number;
}

const newDir = (): Dir => ({ pending: Buffer.alloc(0), offset: 0, marks: [], frame: null, message: null, lost: false, window: Buffer.alloc(0), seen: false });
const MAX_CONTROL = 125;
const WINDOW = 32 * 1024;
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

function header(h: HeaderList, name: string): string | undefined {
  for (const [k, v] of h) if (k.toLowerCase() === name) return v;
  return undefined;
}

/** A frame header at b[0]: a defined opcode, no RSV2/RSV3. */
function plausibleFrame(b: Uint8Array): boolean {
  if (b.length < 2) return false;
  const op = b[0]! & 0x0f;
  return (b[0]! & 0x30) === 0 && WS_OPCODES[op] !== undefined && (op < 8 || ((b[0]! & 0x80) !== 0 && (b[1]! & 0x7f) <= MAX_CONTROL));
}

/** WebSocket over the bytes after an HTTP/1.1 upgrade; see the module comment. */
export class WebSocketDissector implements TcpDissector {
  private readonly conns = new Map<number, Conn>();
  private readonly maxBody: number;
  private readonly counters: WebSocketDissectorStats = { entries: 0, errors: { 'pair-not-found': 0, timeout: 0, dissection: 0 }, resyncs: 0, protocolErrors: 0, bufferedBytes: 0 };

  constructor(
    private readonly emit: (entry: WebSocketEntry) => void,
    options: WebSocketDissectorOptions = {},
  ) {
    this.maxBody = options.maxBodySize ?? 64 * 1024;
  }

  open(stream: number, info: StreamOpen): void {
    const up = info.upgrade;
    const ext = up ? (header(up.responseHeaders, 'sec-websocket-extensions') ?? '') : '';
    const pmd = ext
      .split(',')
      .map((e) => e.split(';').map((x) => x.trim().toLowerCase()))
      .find((params) => params[0] === 'permessage-deflate');
    this.conns.set(stream, {
      clientDir: info.clientDir,
      path: up?.path ?? '',
      url: up ? up.host + up.path : '',
      deflate: pmd !== undefined,
      noTakeover: { client: pmd?.includes('client_no_context_takeover') ?? false, server: pmd?.includes('server_no_context_takeover') ?? false },
      requestHeaders: up?.requestHeaders ?? [],
      dirs: [newDir(), newDir()],
      pings: [],
      nextIndex: up?.firstIndex ?? 0,
    });
  }

  /** Nothing is pending outside streams: every message comes out when its stream ends. */
  flush(): void {}

  /** Counters, and the bytes held right now over all streams (pending input, messages in progress, inflate windows). */
  stats(): WebSocketDissectorStats {
    let buffered = 0;
    for (const c of this.conns.values()) {
      for (const d of c.dirs) buffered += d.pending.length + (d.message?.kept ?? 0) + (d.frame && d.frame.msg !== d.message ? d.frame.msg.kept : 0) + (d.window?.length ?? 0);
      for (const p of c.pings) buffered += p.msg.kept;
    }
    return { ...this.counters, errors: { ...this.counters.errors }, bufferedBytes: buffered };
  }

  private conn(stream: number): Conn {
    let c = this.conns.get(stream);
    if (!c) {
      this.open(stream, { clientDir: undefined });
      c = this.conns.get(stream)!;
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
      if (!plausibleFrame(bytes)) return;
      d.lost = false;
      this.counters.resyncs++;
    }
    if (d.pending.length === 0) d.offset = chunk.offset;
    d.marks.push([chunk.offset, chunk.firstSec, chunk.firstNsec]);
    d.pending = d.pending.length === 0 ? Buffer.from(bytes) : Buffer.concat([d.pending, bytes]);
    this.run(conn, chunk.stream, chunk.dir);
  }

  onGap(gap: TcpGap): void {
    const conn = this.conn(gap.stream);
    const d = conn.dirs[gap.dir];
    const f = d.frame;
    if (f && f.length - f.done >= gap.length && f.opcode < 8 && d.pending.length === 0) {
      // The hole is inside a data frame's payload: skip it, keep the message (flagged).
      f.done += gap.length;
      f.msg.size += gap.length;
      f.msg.cut = true;
      f.msg.error = 'dissection';
      d.offset += gap.length;
      if (f.done === f.length) this.endFrame(conn, gap.stream, gap.dir);
      return;
    }
    if (d.message) {
      d.message.error = 'dissection';
      d.message.cut = true;
      this.emitMessage(conn, gap.stream, d.message, null);
      d.message = null;
    }
    d.frame = null;
    d.lost = true;
    d.window = null; // the inflate history is gone
    d.pending = Buffer.alloc(0);
    d.marks = [];
  }

  onEnd(end: TcpEnd): void {
    const conn = this.conns.get(end.stream);
    if (!conn) return;
    const d = conn.dirs[end.dir];
    if (d.message) {
      // A fragmented message the sender never finished.
      d.message.error = 'dissection';
      this.emitMessage(conn, end.stream, d.message, null);
      d.message = null;
    }
    if (!end.closed) return;
    for (const p of conn.pings.splice(0)) this.emitMessage(conn, end.stream, p.msg, null, p.index);
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

  private role(conn: Conn, dir: TcpDirection, masked: boolean): 'client' | 'server' {
    // Without the handshake, the masked side is the client (RFC 6455 §5.1).
    conn.clientDir ??= masked ? dir : ((dir === 0 ? 1 : 0) as TcpDirection);
    return dir === conn.clientDir ? 'client' : 'server';
  }

  private run(conn: Conn, stream: number, dir: TcpDirection): void {
    const d = conn.dirs[dir];
    while (!d.lost) {
      const f = d.frame;
      if (f) {
        const n = Math.min(f.length - f.done, d.pending.length);
        if (n === 0 && f.length > f.done) return;
        this.payload(f, d.pending, n);
        this.consume(d, n);
        if (f.done < f.length) return;
        this.endFrame(conn, stream, dir);
        continue;
      }
      const b = d.pending;
      if (b.length < 2) return;
      const masked = (b[1]! & 0x80) !== 0;
      let len = b[1]! & 0x7f;
      let at = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = (b[2]! << 8) | b[3]!;
        at = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        const hi = ((b[2]! << 24) | (b[3]! << 16) | (b[4]! << 8) | b[5]!) >>> 0;
        const lo = ((b[6]! << 24) | (b[7]! << 16) | (b[8]! << 8) | b[9]!) >>> 0;
        len = hi * 2 ** 32 + lo; // exact to 2^53; only counted, never allocated
        at = 10;
      }
      if (masked && b.length < at + 4) return;
      const fin = (b[0]! & 0x80) !== 0;
      const rsv1 = (b[0]! & 0x40) !== 0;
      const opcode = b[0]! & 0x0f;
      const mask = masked ? Buffer.from(b.subarray(at, at + 4)) : null;
      if (masked) at += 4;
      const start = this.timeAt(d, d.offset);
      this.consume(d, at);
      if (WS_OPCODES[opcode] === undefined || (b[0]! & 0x30) !== 0 || (opcode >= 8 && (!fin || len > MAX_CONTROL))) {
        // Not a frame we can trust: framing is lost.
        this.counters.protocolErrors++;
        if (d.message) {
          d.message.error = 'dissection';
          this.emitMessage(conn, stream, d.message, null);
          d.message = null;
        }
        d.lost = true;
        d.window = null;
        d.pending = Buffer.alloc(0);
        return;
      }
      let msg: Message;
      if (opcode === 0) {
        if (!d.message) {
          // A continuation with no message started (joined mid-message, or after a gap).
          this.counters.protocolErrors++;
          d.message = this.newMessage(0, dir, start, masked, false);
          d.message.error = 'dissection';
        }
        msg = d.message;
        msg.fragments++;
      } else if (opcode >= 8) {
        msg = this.newMessage(opcode, dir, start, masked, false);
      } else {
        if (d.message) {
          // A new message before the last one ended: the last one is incomplete.
          this.counters.protocolErrors++;
          d.message.error = 'dissection';
          this.emitMessage(conn, stream, d.message, null);
        }
        msg = this.newMessage(opcode, dir, start, masked, rsv1 && conn.deflate);
        d.message = msg;
      }
      d.frame = { fin, rsv1, opcode, mask, length: len, done: 0, msg };
      if (len === 0) this.endFrame(conn, stream, dir);
    }
  }

  private newMessage(opcode: number, dir: TcpDirection, start: Time, masked: boolean, compressed: boolean): Message {
    return { opcode, dir, start, parts: [], kept: 0, size: 0, cut: false, fragments: 1, masked, compressed, error: undefined };
  }

  /** Takes n payload bytes of the current frame from buf[0, n): unmasked, kept up to the bound. */
  private payload(f: Frame, buf: Buffer, n: number): void {
    const msg = f.msg;
    // Compressed messages keep up to 4x the bound of compressed input, so the output can reach it.
    const bound = msg.compressed ? this.maxBody * 4 : this.maxBody;
    const keep = Math.min(n, bound - msg.kept);
    if (keep > 0 && !msg.cut) {
      const part = Buffer.from(buf.subarray(0, keep));
      if (f.mask) for (let i = 0; i < keep; i++) part[i]! ^= f.mask[(f.done + i) & 3]!;
      msg.parts.push(part);
      msg.kept += keep;
    }
    if (keep < n) msg.cut = true;
    msg.size += n;
    f.done += n;
  }

  private endFrame(conn: Conn, stream: number, dir: TcpDirection): void {
    const d = conn.dirs[dir];
    const f = d.frame!;
    d.frame = null;
    const msg = f.msg;
    if (f.opcode >= 8) {
      this.control(conn, stream, msg);
      return;
    }
    if (!f.fin) return;
    d.message = null;
    this.emitMessage(conn, stream, msg, null);
  }

  private control(conn: Conn, stream: number, msg: Message): void {
    if (msg.opcode === 9) {
      conn.pings.push({ msg, index: conn.nextIndex++ });
      if (conn.pings.length > 64) {
        const old = conn.pings.shift()!;
        this.emitMessage(conn, stream, old.msg, null, old.index);
      }
      return;
    }
    if (msg.opcode === 10) {
      const i = conn.pings.findIndex((p) => p.msg.dir !== msg.dir);
      if (i >= 0) {
        const [ping] = conn.pings.splice(i, 1);
        this.emitMessage(conn, stream, ping!.msg, msg, ping!.index);
        return;
      }
    }
    this.emitMessage(conn, stream, msg, null);
  }

  /** The body of a message: unmasked, inflated when compressed. */
  private body(conn: Conn, msg: Message): { body: Buffer | null; truncated: boolean; inflateFailed: boolean } {
    const raw = msg.kept > 0 ? Buffer.concat(msg.parts) : null;
    if (!msg.compressed) return { body: raw, truncated: msg.cut, inflateFailed: false };
    const d = conn.dirs[msg.dir];
    const client = msg.dir === conn.clientDir;
    const noTakeover = client ? conn.noTakeover.client : conn.noTakeover.server;
    const dict = noTakeover ? Buffer.alloc(0) : d.window;
    if (msg.cut || dict === null) {
      if (!noTakeover) d.window = null;
      return { body: raw ? raw.subarray(0, this.maxBody) : null, truncated: true, inflateFailed: true };
    }
    const input = Buffer.concat([raw ?? Buffer.alloc(0), TAIL]);
    const opts: zlib.ZlibOptions = { finishFlush: zlib.constants.Z_SYNC_FLUSH, maxOutputLength: this.maxBody + 1 };
    if (dict.length > 0) opts.dictionary = dict;
    // 'big': the output exceeds the bound; null: corrupt input.
    const inflate = (n: number): Buffer | 'big' | null => {
      try {
        const out = zlib.inflateRawSync(input.subarray(0, n), opts);
        return out.length > this.maxBody ? 'big' : out;
      } catch (e) {
        return e instanceof RangeError || (e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' ? 'big' : null;
      }
    };
    const whole = inflate(input.length);
    if (whole instanceof Buffer) {
      if (!noTakeover) d.window = Buffer.from(Buffer.concat([dict, whole]).subarray(-WINDOW));
      return { body: whole, truncated: false, inflateFailed: false };
    }
    // Too large for the bound, or corrupt: the window no longer follows the sender's.
    if (!noTakeover) d.window = null;
    if (whole === null) return { body: raw ? raw.subarray(0, this.maxBody) : null, truncated: true, inflateFailed: true };
    // Too large: the longest input prefix whose output fits (a prefix inflates to a prefix of
    // the output under sync flush), found by bisection: the first maxBody bytes of the message.
    let lo = 0;
    let hi = input.length;
    let best: Buffer = Buffer.alloc(0);
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      const out = inflate(mid);
      if (out instanceof Buffer) {
        lo = mid;
        best = out;
      } else hi = mid - 1;
    }
    return { body: best, truncated: true, inflateFailed: false };
  }

  private emitMessage(conn: Conn, stream: number, msg: Message, pong: Message | null, index = conn.nextIndex++): void {
    const role = this.role(conn, msg.dir, msg.masked);
    const b = this.body(conn, msg);
    const wire: EntryMessage = { headers: [], body: b.body, body_size: msg.size, truncated: b.truncated };
    let closeCode = 0;
    let closeReason = '';
    if (msg.opcode === 8 && b.body && b.body.length >= 2) {
      closeCode = b.body.readUInt16BE(0);
      closeReason = b.body.toString('utf8', 2);
    }
    let request: EntryMessage | null = null;
    let response: EntryMessage | null = null;
    if (msg.opcode === 9) {
      request = wire;
      if (pong) {
        const pb = this.body(conn, pong);
        response = { headers: [], body: pb.body, body_size: pong.size, truncated: pb.truncated };
      }
    } else if (role === 'client') request = wire;
    else response = wire;
    const t = msg.start;
    const name = WS_OPCODES[msg.opcode] ?? `opcode-${msg.opcode}`;
    const entry: WebSocketEntry = {
      protocol: 'ws',
      stream,
      index,
      timestamp: t.sec * 1e6 + Math.floor(t.nsec / 1000),
      elapsed_time: pong ? Math.round(((pong.start.sec - t.sec) * 1e9 + (pong.start.nsec - t.nsec)) / 1000) : 0,
      method: name,
      path: conn.path,
      url: conn.url,
      status_code: closeCode,
      request,
      response,
      ws_opcode: name,
      ws_direction: role,
      ws_payload_size: msg.size,
      ws_fragments: msg.fragments,
      ws_close_code: closeCode,
      ws_close_reason: closeReason,
      ws_masked: msg.masked,
      ws_compressed: msg.compressed,
      ws_inflate_failed: b.inflateFailed,
    };
    // 1000 normal, 1001 going away, 1005 no status: not failures; anything else is (RFC 6455 §7.4.1).
    if (msg.opcode === 8 && closeCode !== 0 && closeCode !== 1000 && closeCode !== 1001 && closeCode !== 1005) {
      entry.failure = `close ${closeCode}${closeReason ? `: ${closeReason}` : ''}`;
    }
    let error = msg.error;
    if (!error && msg.opcode === 9 && !pong) error = 'pair-not-found';
    if (error) {
      entry.error = error;
      this.counters.errors[error]++;
    }
    this.counters.entries++;
    this.emit(entry);
  }
}
