import type { TcpChunk, TcpDirection, TcpEnd, TcpGap } from '@kubeshark-mcp/capture';
import type { Entry, EntryError, EntryMessage, HeaderList } from './entry';
import { HeldBytes } from './held';
import type { StreamOpen, TcpDissector, TcpProtocol, Verdict } from './stream';

/**
 * AMQP 0-9-1 dissector (RabbitMQ's dialect): one `AmqpEntry` per method call. Pure: no I/O,
 * no timers; time is the capture time of the chunks.
 *
 * - Framing: the protocol header `AMQP\0\0\x09\x01`, then frames of type (1 method,
 *   2 content header, 3 content body, 8 heartbeat), channel, size, payload and the frame-end
 *   octet 0xCE. Method and header frames are kept up to 64 KiB for parsing; body frames are
 *   streamed into the message they belong to, kept up to `maxBodySize`. A size above
 *   `maxFrameSize` or a missing frame-end means the direction is out of sync: it resyncs at
 *   the next plausible frame (a known method, a basic content header or a heartbeat, each
 *   with its frame-end in place), scanning a bounded amount.
 * - Methods of every class (connection, channel, exchange, queue, basic, confirm, tx, with
 *   RabbitMQ's exchange.bind/unbind, basic.nack, connection.blocked/update-secret) are named
 *   `class.method` and their arguments read (exchange, routing key, queue, reply code/text,
 *   no-wait, ...).
 * - Synchronous methods pair with their replies (`queue.declare` -> `queue.declare-ok`,
 *   `basic.get` -> `basic.get-ok` or `basic.get-empty`) per channel, sent by the other side,
 *   in order. A request sent with no-wait gets no reply and comes out at once. A
 *   `channel.close` (or `connection.close`, for every channel) answers the requests the other
 *   side still waits on: they come out with its reply code and text (`failure`).
 * - Asynchronous methods (basic.publish, basic.deliver, basic.return, basic.ack, ...) are
 *   entries of their own, without a response. Those that carry content (publish, deliver,
 *   return, get-ok) come out once the content header and all body frames have arrived; the
 *   properties become the request's headers and the body its body.
 * - Entries come out when complete; their `index` is taken when the call's first method
 *   arrives, so indexes follow request order while emission follows completion.
 * - Gaps: a gap inside a body frame is skipped (the message is `truncated`, the entry flagged
 *   `dissection`); a gap anywhere else resyncs the direction, and content interrupted by it
 *   comes out flagged.
 * - Joined mid-stream, a direction's first byte starts a frame when it starts the protocol
 *   header or a plausible frame: a whole one with its frame-end when it is at most 4 KiB, else
 *   its first 11 bytes (type, size, known method or basic content header). Its bytes are held
 *   until that is decided, so the decision never depends on how the stream was cut into
 *   chunks; otherwise the direction resyncs.
 */

/** An AMQP method call in the shared vocabulary, plus the AMQP-specific details. */
export interface AmqpEntry extends Entry {
  protocol: 'amqp';
  /** `basic.publish`, `queue.declare`, ... (the request's; the reply's when there is no request). */
  amqp_method: string;
  amqp_channel: number;
  /** Exchange, routing key and queue named by the request (or its reply); '' when none. */
  amqp_exchange: string;
  amqp_routing_key: string;
  amqp_queue: string;
  /** Reply code and text of a close (or return) that ended the call; 0 and '' otherwise. */
  amqp_reply_code: number;
  amqp_reply_text: string;
}

export interface AmqpDissectorOptions {
  /** Content body bytes kept per message. Default 64 KiB; 0 keeps none. */
  maxBodySize?: number;
  /** Largest frame accepted; a larger size means the stream is out of sync. Default 16 MiB. */
  maxFrameSize?: number;
}

export interface AmqpDissectorStats {
  entries: number;
  errors: Record<EntryError, number>;
  /** Streams in which at least one frame was read. */
  amqpStreams: number;
  frames: number;
  /** Frames that could not be read (unknown method, bad frame-end, content without a method). */
  malformed: number;
  resyncs: number;
  skippedBytes: number;
}

type ArgType = 'octet' | 'short' | 'long' | 'longlong' | 'shortstr' | 'longstr' | 'bit' | 'table';

interface MethodDef {
  name: string;
  args: readonly (readonly [string, ArgType])[];
  /** Method ids (same class) of the replies a synchronous request waits for. */
  replies?: readonly number[];
  /** Carries content (a header frame and body frames follow). */
  content?: boolean;
}

const CLOSE_ARGS = [['reply-code', 'short'], ['reply-text', 'shortstr'], ['class-id', 'short'], ['method-id', 'short']] as const;
const BIND_ARGS = [['reserved-1', 'short'], ['destination', 'shortstr'], ['source', 'shortstr'], ['routing-key', 'shortstr'], ['no-wait', 'bit'], ['arguments', 'table']] as const;

/** Classes and methods of AMQP 0-9-1 (with RabbitMQ's extensions), by class id then method id. */
const CLASSES: ReadonlyMap<number, { name: string; methods: ReadonlyMap<number, MethodDef> }> = new Map(
  (
    [
      [10, 'connection', [
        [10, 'start', [['version-major', 'octet'], ['version-minor', 'octet'], ['server-properties', 'table'], ['mechanisms', 'longstr'], ['locales', 'longstr']], [11]],
        [11, 'start-ok', [['client-properties', 'table'], ['mechanism', 'shortstr'], ['response', 'longstr'], ['locale', 'shortstr']]],
        [20, 'secure', [['challenge', 'longstr']], [21]],
        [21, 'secure-ok', [['response', 'longstr']]],
        [30, 'tune', [['channel-max', 'short'], ['frame-max', 'long'], ['heartbeat', 'short']], [31]],
        [31, 'tune-ok', [['channel-max', 'short'], ['frame-max', 'long'], ['heartbeat', 'short']]],
        [40, 'open', [['virtual-host', 'shortstr'], ['reserved-1', 'shortstr'], ['reserved-2', 'bit']], [41]],
        [41, 'open-ok', [['reserved-1', 'shortstr']]],
        [50, 'close', CLOSE_ARGS, [51]],
        [51, 'close-ok', []],
        [60, 'blocked', [['reason', 'shortstr']]],
        [61, 'unblocked', []],
        [70, 'update-secret', [['new-secret', 'longstr'], ['reason', 'shortstr']], [71]],
        [71, 'update-secret-ok', []],
      ]],
      [20, 'channel', [
        [10, 'open', [['reserved-1', 'shortstr']], [11]],
        [11, 'open-ok', [['reserved-1', 'longstr']]],
        [20, 'flow', [['active', 'bit']], [21]],
        [21, 'flow-ok', [['active', 'bit']]],
        [40, 'close', CLOSE_ARGS, [41]],
        [41, 'close-ok', []],
      ]],
      [40, 'exchange', [
        [10, 'declare', [['reserved-1', 'short'], ['exchange', 'shortstr'], ['type', 'shortstr'], ['passive', 'bit'], ['durable', 'bit'], ['auto-delete', 'bit'], ['internal', 'bit'], ['no-wait', 'bit'], ['arguments', 'table']], [11]],
        [11, 'declare-ok', []],
        [20, 'delete', [['reserved-1', 'short'], ['exchange', 'shortstr'], ['if-unused', 'bit'], ['no-wait', 'bit']], [21]],
        [21, 'delete-ok', []],
        [30, 'bind', BIND_ARGS, [31]],
        [31, 'bind-ok', []],
        [40, 'unbind', BIND_ARGS, [51]],
        [51, 'unbind-ok', []],
      ]],
      [50, 'queue', [
        [10, 'declare', [['reserved-1', 'short'], ['queue', 'shortstr'], ['passive', 'bit'], ['durable', 'bit'], ['exclusive', 'bit'], ['auto-delete', 'bit'], ['no-wait', 'bit'], ['arguments', 'table']], [11]],
        [11, 'declare-ok', [['queue', 'shortstr'], ['message-count', 'long'], ['consumer-count', 'long']]],
        [20, 'bind', [['reserved-1', 'short'], ['queue', 'shortstr'], ['exchange', 'shortstr'], ['routing-key', 'shortstr'], ['no-wait', 'bit'], ['arguments', 'table']], [21]],
        [21, 'bind-ok', []],
        [30, 'purge', [['reserved-1', 'short'], ['queue', 'shortstr'], ['no-wait', 'bit']], [31]],
        [31, 'purge-ok', [['message-count', 'long']]],
        [40, 'delete', [['reserved-1', 'short'], ['queue', 'shortstr'], ['if-unused', 'bit'], ['if-empty', 'bit'], ['no-wait', 'bit']], [41]],
        [41, 'delete-ok', [['message-count', 'long']]],
        [50, 'unbind', [['reserved-1', 'short'], ['queue', 'shortstr'], ['exchange', 'shortstr'], ['routing-key', 'shortstr'], ['arguments', 'table']], [51]],
        [51, 'unbind-ok', []],
      ]],
      [60, 'basic', [
        [10, 'qos', [['prefetch-size', 'long'], ['prefetch-count', 'short'], ['global', 'bit']], [11]],
        [11, 'qos-ok', []],
        [20, 'consume', [['reserved-1', 'short'], ['queue', 'shortstr'], ['consumer-tag', 'shortstr'], ['no-local', 'bit'], ['no-ack', 'bit'], ['exclusive', 'bit'], ['no-wait', 'bit'], ['arguments', 'table']], [21]],
        [21, 'consume-ok', [['consumer-tag', 'shortstr']]],
        [30, 'cancel', [['consumer-tag', 'shortstr'], ['no-wait', 'bit']], [31]],
        [31, 'cancel-ok', [['consumer-tag', 'shortstr']]],
        [40, 'publish', [['reserved-1', 'short'], ['exchange', 'shortstr'], ['routing-key', 'shortstr'], ['mandatory', 'bit'], ['immediate', 'bit']], undefined, true],
        [50, 'return', [['reply-code', 'short'], ['reply-text', 'shortstr'], ['exchange', 'shortstr'], ['routing-key', 'shortstr']], undefined, true],
        [60, 'deliver', [['consumer-tag', 'shortstr'], ['delivery-tag', 'longlong'], ['redelivered', 'bit'], ['exchange', 'shortstr'], ['routing-key', 'shortstr']], undefined, true],
        [70, 'get', [['reserved-1', 'short'], ['queue', 'shortstr'], ['no-ack', 'bit']], [71, 72]],
        [71, 'get-ok', [['delivery-tag', 'longlong'], ['redelivered', 'bit'], ['exchange', 'shortstr'], ['routing-key', 'shortstr'], ['message-count', 'long']], undefined, true],
        [72, 'get-empty', [['reserved-1', 'shortstr']]],
        [80, 'ack', [['delivery-tag', 'longlong'], ['multiple', 'bit']]],
        [90, 'reject', [['delivery-tag', 'longlong'], ['requeue', 'bit']]],
        [100, 'recover-async', [['requeue', 'bit']]],
        [110, 'recover', [['requeue', 'bit']], [111]],
        [111, 'recover-ok', []],
        [120, 'nack', [['delivery-tag', 'longlong'], ['multiple', 'bit'], ['requeue', 'bit']]],
      ]],
      [85, 'confirm', [
        [10, 'select', [['nowait', 'bit']], [11]],
        [11, 'select-ok', []],
      ]],
      [90, 'tx', [
        [10, 'select', [], [11]],
        [11, 'select-ok', []],
        [20, 'commit', [], [21]],
        [21, 'commit-ok', []],
        [30, 'rollback', [], [31]],
        [31, 'rollback-ok', []],
      ]],
    ] as [number, string, [number, string, MethodDef['args'], number[]?, boolean?][]][]
  ).map(([id, name, methods]) => [
    id,
    { name, methods: new Map(methods.map(([mid, mname, args, replies, content]) => [mid, { name: `${name}.${mname}`, args, replies, content }])) },
  ]),
);

/** The method's definition, or undefined for ids outside the spec. */
export function amqpMethod(classId: number, methodId: number): { name: string; synchronous: boolean; content: boolean } | undefined {
  const m = CLASSES.get(classId)?.methods.get(methodId);
  return m ? { name: m.name, synchronous: m.replies !== undefined, content: m.content === true } : undefined;
}

const FRAME_METHOD = 1;
const FRAME_HEADER = 2;
const FRAME_BODY = 3;
const FRAME_HEARTBEAT = 8;
const FRAME_END = 0xce;
const PROTOCOL_HEADER = Buffer.from('AMQP\x00\x00\x09\x01', 'latin1');
const CLASS_CONNECTION = 10;
const CLASS_CHANNEL = 20;
const CLASS_BASIC = 60;
const DEFAULT_MAX_BODY = 64 * 1024;
const DEFAULT_MAX_FRAME = 16 * 1024 * 1024;
/** Method and header frame bytes kept for parsing. */
const KEEP = 64 * 1024;
/** Largest method or header frame a resync accepts as a landmark. */
const MAX_LANDMARK = 64 * 1024;
const MAX_RESYNC_SCAN = 1024 * 1024;
/** A first frame (joined mid-stream) up to this size is judged whole, frame-end included. */
const ALIGN_WHOLE = 4096;
/**
 * Per connection: synchronous requests waiting for a reply, and messages whose content is
 * being received (each keeps up to `maxBodySize`); past these the oldest is given up. With
 * the frame buffers, they bound a connection's memory whatever the number of channels.
 */
const MAX_PENDING = 64;
const MAX_CONTENTS = 16;
/** Field tables nesting. */
const MAX_TABLE_DEPTH = 8;
const MAX_VALUE_TEXT = 1024;

class Short extends Error {}

class Reader {
  pos = 0;
  private bits = 0;
  private bitCount = 0;
  constructor(
    private readonly b: Uint8Array,
    private end: number = b.length,
  ) {}
  private need(n: number): void {
    this.bitCount = 0;
    if (n < 0 || this.pos + n > this.end) throw new Short();
  }
  u8(): number {
    this.need(1);
    return this.b[this.pos++]!;
  }
  u16(): number {
    this.need(2);
    const v = (this.b[this.pos]! << 8) | this.b[this.pos + 1]!;
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const p = this.pos;
    this.pos += 4;
    return ((this.b[p]! << 24) | (this.b[p + 1]! << 16) | (this.b[p + 2]! << 8) | this.b[p + 3]!) >>> 0;
  }
  /** A 64-bit integer; exact up to 2^53. */
  u64(): number {
    const hi = this.u32();
    return hi * 2 ** 32 + this.u32();
  }
  i64(): number {
    const hi = this.u32() | 0;
    return hi * 2 ** 32 + this.u32();
  }
  bytes(n: number): Uint8Array {
    this.need(n);
    const v = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  text(n: number): string {
    const v = this.bytes(n);
    return Buffer.from(v.buffer, v.byteOffset, v.length).toString('utf8');
  }
  shortstr(): string {
    return this.text(this.u8());
  }
  longstr(): string {
    return this.text(this.u32());
  }
  /** Consecutive bit arguments share octets, low bit first. */
  bit(): boolean {
    if (this.bitCount === 0 || this.bitCount === 8) {
      const v = this.u8();
      this.bits = v;
      this.bitCount = 0;
    }
    return ((this.bits >> this.bitCount++) & 1) === 1;
  }
  /** A field table as text (`{k: v, ...}`), read to its length. */
  table(depth = 0): string {
    const n = this.u32();
    this.need(n);
    const end = this.pos + n;
    const saved = this.end;
    this.end = end;
    const parts: string[] = [];
    try {
      while (this.pos < end) {
        const k = this.shortstr();
        parts.push(`${k}: ${this.value(depth)}`);
      }
    } finally {
      this.end = saved;
    }
    this.pos = end;
    return `{${parts.join(', ')}}`;
  }
  /** A field value (RabbitMQ's type letters, which the 0-9-1 errata adopt). */
  value(depth: number): string {
    if (depth > MAX_TABLE_DEPTH) throw new Short();
    const t = String.fromCharCode(this.u8());
    switch (t) {
      case 't':
        return this.u8() !== 0 ? 'true' : 'false';
      case 'b': {
        const v = this.u8();
        return String(v > 127 ? v - 256 : v);
      }
      case 'B':
        return String(this.u8());
      case 's': {
        const v = this.u16();
        return String(v > 32767 ? v - 65536 : v);
      }
      case 'u':
        return String(this.u16());
      case 'I':
        return String(this.u32() | 0);
      case 'i':
        return String(this.u32());
      case 'l':
      case 'L':
        return String(this.i64());
      case 'f': {
        const v = this.bytes(4);
        return String(Buffer.from(v).readFloatBE(0));
      }
      case 'd': {
        const v = this.bytes(8);
        return String(Buffer.from(v).readDoubleBE(0));
      }
      case 'D': {
        const scale = this.u8();
        return String((this.u32() | 0) / 10 ** scale);
      }
      case 'S':
        return JSON.stringify(this.longstr().slice(0, MAX_VALUE_TEXT));
      case 'x': {
        const n = this.u32();
        this.bytes(n);
        return `<${n} bytes>`;
      }
      case 'T':
        return String(this.u64());
      case 'V':
        return 'null';
      case 'F':
        return this.table(depth + 1);
      case 'A': {
        const n = this.u32();
        this.need(n);
        const end = this.pos + n;
        const saved = this.end;
        this.end = end;
        const items: string[] = [];
        try {
          while (this.pos < end) items.push(this.value(depth + 1));
        } finally {
          this.end = saved;
        }
        this.pos = end;
        return `[${items.join(', ')}]`;
      }
      default:
        throw new Short();
    }
  }
}

/** A method frame's payload, read. */
interface Method {
  classId: number;
  methodId: number;
  def: MethodDef;
  args: HeaderList;
  exchange: string;
  routingKey: string;
  queue: string;
  replyCode: number;
  replyText: string;
  noWait: boolean;
}

function readMethod(payload: Uint8Array, end: number): Method | null {
  const r = new Reader(payload, end);
  try {
    const classId = r.u16();
    const methodId = r.u16();
    const def = CLASSES.get(classId)?.methods.get(methodId);
    if (!def) return null;
    const m: Method = { classId, methodId, def, args: [], exchange: '', routingKey: '', queue: '', replyCode: 0, replyText: '', noWait: false };
    for (const [name, type] of def.args) {
      let v: string;
      switch (type) {
        case 'octet':
          v = String(r.u8());
          break;
        case 'short':
          v = String(r.u16());
          break;
        case 'long':
          v = String(r.u32());
          break;
        case 'longlong':
          v = String(r.u64());
          break;
        case 'shortstr':
          v = r.shortstr();
          break;
        case 'longstr':
          v = r.longstr();
          if (v.length > MAX_VALUE_TEXT) v = v.slice(0, MAX_VALUE_TEXT);
          break;
        case 'bit':
          v = r.bit() ? '1' : '0';
          break;
        case 'table':
          v = r.table();
          break;
        default: {
          const never: never = type;
          throw new Error(`unknown type ${String(never)}`);
        }
      }
      if (name.startsWith('reserved')) continue;
      m.args.push([name, v]);
      if (name === 'exchange' || name === 'source') m.exchange = v;
      else if (name === 'routing-key') m.routingKey = v;
      else if (name === 'queue') m.queue = v;
      else if (name === 'reply-code') m.replyCode = Number(v);
      else if (name === 'reply-text') m.replyText = v;
      else if (name === 'no-wait' || name === 'nowait') m.noWait = v === '1';
    }
    return m;
  } catch {
    return null;
  }
}

const BASIC_PROPERTIES: readonly (readonly [string, 'shortstr' | 'table' | 'octet' | 'longlong'])[] = [
  ['content-type', 'shortstr'], ['content-encoding', 'shortstr'], ['headers', 'table'], ['delivery-mode', 'octet'],
  ['priority', 'octet'], ['correlation-id', 'shortstr'], ['reply-to', 'shortstr'], ['expiration', 'shortstr'],
  ['message-id', 'shortstr'], ['timestamp', 'longlong'], ['type', 'shortstr'], ['user-id', 'shortstr'],
  ['app-id', 'shortstr'], ['cluster-id', 'shortstr'],
];

/** A content header frame: body size and the basic properties present, as header fields. */
function readContentHeader(payload: Uint8Array, end: number): { classId: number; bodySize: number; properties: HeaderList } | null {
  const r = new Reader(payload, end);
  try {
    const classId = r.u16();
    r.u16(); // weight
    const bodySize = r.u64();
    const flags = r.u16();
    const properties: HeaderList = [];
    // Property flags: bit 15 is the first property; bit 0 says another flags word follows (none for basic).
    BASIC_PROPERTIES.forEach(([name, type], i) => {
      if ((flags & (1 << (15 - i))) === 0) return;
      const v = type === 'shortstr' ? r.shortstr() : type === 'table' ? r.table() : type === 'octet' ? String(r.u8()) : String(r.u64());
      properties.push([name, v]);
    });
    return { classId, bodySize, properties };
  } catch {
    return null;
  }
}

/**
 * A plausible frame at the start of `b`: a known method, a content header or a heartbeat,
 * with its frame-end in place; body frames only when `bodies` (inside a run of frames).
 */
function judgeFrame(b: Uint8Array, maxFrame: number, bodies: boolean): Verdict | number {
  if (b.length < 1) return 'more';
  const type = b[0]!;
  if (type !== FRAME_METHOD && type !== FRAME_HEADER && type !== FRAME_HEARTBEAT && !(bodies && type === FRAME_BODY)) return 'no';
  if (b.length < 7) return 'more';
  const channel = (b[1]! << 8) | b[2]!;
  const size = ((b[3]! << 24) | (b[4]! << 16) | (b[5]! << 8) | b[6]!) >>> 0;
  if (type === FRAME_HEARTBEAT && (channel !== 0 || size !== 0)) return 'no';
  if (type === FRAME_METHOD && size < 4) return 'no';
  if (type === FRAME_HEADER && size < 14) return 'no';
  if (size > (type === FRAME_BODY ? maxFrame : Math.min(maxFrame, MAX_LANDMARK))) return 'no';
  if (type === FRAME_METHOD && b.length >= 11) {
    const def = CLASSES.get((b[7]! << 8) | b[8]!)?.methods.get((b[9]! << 8) | b[10]!);
    if (!def) return 'no';
  }
  if (type === FRAME_HEADER && b.length >= 11 && (((b[7]! << 8) | b[8]!) !== CLASS_BASIC || b[9] !== 0 || b[10] !== 0)) return 'no';
  if (b.length < 8 + size) return 'more';
  return b[7 + size] === FRAME_END ? 8 + size : 'no';
}

/**
 * AMQP 0-9-1 by content: the protocol header from a client; from a server, or from a side of
 * unknown role, a run of well-formed frames (type, size, frame-end 0xCE) starting with a
 * known method, a basic content header or a heartbeat.
 */
export const AMQP_PROTOCOL: TcpProtocol = {
  name: 'amqp',
  ports: [5672],
  detect(bytes: Uint8Array, fromClient: boolean | undefined): Verdict {
    if (bytes.length === 0) return 'more';
    if (bytes[0] === 0x41) {
      // 'A': the protocol header. (A server refusing the version answers with its own header
      // and closes: not a 0-9-1 stream.)
      const n = Math.min(bytes.length, PROTOCOL_HEADER.length);
      for (let i = 0; i < n; i++) if (bytes[i] !== PROTOCOL_HEADER[i]) return 'no';
      return n < PROTOCOL_HEADER.length ? 'more' : 'yes';
    }
    if (fromClient === true) return 'no';
    const first = judgeFrame(bytes, DEFAULT_MAX_FRAME, false);
    return typeof first === 'number' ? 'yes' : first;
  },
};

interface Time {
  sec: number;
  nsec: number;
}

interface Content {
  method: Method;
  start: Time;
  headerSeen: boolean;
  bodySize: number;
  received: number;
  properties: HeaderList;
  parts: Uint8Array[];
  kept: number;
  cut: boolean;
  /** A request this content answers (basic.get-ok). */
  request: Call | null;
  index: number;
}

interface Call {
  method: Method;
  dir: TcpDirection;
  start: Time;
  message: EntryMessage;
  /** The entry's index, taken when the call became an entry of its own (request order); -1 for a reply. */
  index: number;
}

interface Channel {
  /** Synchronous requests waiting for a reply, in order, per sending direction. */
  pending: Call[];
  /** Content being received, per direction. */
  content: [Content | null, Content | null];
}

interface Dir {
  state: 'head' | 'protocol' | 'payload' | 'end' | 'resync' | 'dead';
  head: Uint8Array;
  headHave: number;
  type: number;
  channel: number;
  size: number;
  /** Payload bytes still to come. */
  remaining: number;
  /** Kept payload of a method/header frame. */
  payload: Uint8Array;
  payloadHave: number;
  cut: boolean;
  start: Time;
  now: Time;
  scan: Buffer;
  scanned: number;
  seen: boolean;
  /** Joined mid-stream: the first bytes, held until it is known whether they start at a frame. */
  held: HeldBytes | null;
}

interface Conn {
  dirs: [Dir, Dir];
  channels: Map<number, Channel>;
  /** Requests waiting over all channels, and messages whose content is being received. */
  pending: number;
  contents: number;
  counted: boolean;
}

const EMPTY = new Uint8Array(0);

const newDir = (): Dir => ({
  state: 'head',
  head: new Uint8Array(8),
  headHave: 0,
  type: 0,
  channel: 0,
  size: 0,
  remaining: 0,
  payload: EMPTY,
  payloadHave: 0,
  cut: false,
  start: { sec: 0, nsec: 0 },
  now: { sec: 0, nsec: 0 },
  scan: Buffer.alloc(0),
  scanned: 0,
  seen: false,
  held: null,
});

/** AMQP 0-9-1 over reassembled TCP streams; see the module comment. */
export class AmqpDissector implements TcpDissector {
  private readonly conns = new Map<number, Conn>();
  private readonly nextIndex = new Map<number, number>();
  private readonly maxBody: number;
  private readonly maxFrame: number;
  private readonly counters: AmqpDissectorStats = {
    entries: 0,
    errors: { 'pair-not-found': 0, timeout: 0, dissection: 0 },
    amqpStreams: 0,
    frames: 0,
    malformed: 0,
    resyncs: 0,
    skippedBytes: 0,
  };

  constructor(
    private readonly emit: (entry: AmqpEntry) => void,
    options: AmqpDissectorOptions = {},
  ) {
    this.maxBody = Math.max(0, options.maxBodySize ?? DEFAULT_MAX_BODY);
    this.maxFrame = options.maxFrameSize ?? DEFAULT_MAX_FRAME;
  }

  /** Requests pair with replies from the other direction, so the client's direction is not needed. */
  open(stream: number, info: StreamOpen): void {
    if (info.upgrade) this.nextIndex.set(stream, info.upgrade.firstIndex);
  }

  flush(): void {
    for (const [stream, conn] of this.conns) {
      for (const dir of [0, 1] as const) if (conn.dirs[dir].held) this.release(conn, stream, dir, true);
      this.drain(conn, stream);
    }
    this.conns.clear();
  }

  stats(): AmqpDissectorStats {
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
      if (this.aligned(d.held.bytes, false) !== 'more') this.release(conn, c.stream, c.dir, false);
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
    if (d.state === 'payload' && d.type === FRAME_BODY) {
      // Inside a body frame: the message loses bytes but the framing holds.
      const inside = Math.min(left, d.remaining);
      d.remaining -= inside;
      left -= inside;
      const content = this.channel(conn, d.channel).content[g.dir];
      if (content) {
        content.received += inside;
        content.cut = true;
      }
      if (d.remaining === 0) d.state = 'end';
      if (left === 0) return;
    }
    if (left === 0 && d.state === 'head' && d.headHave === 0) return;
    // Anything else lost: the frame being read is gone, and so is content it belonged to.
    if (d.state === 'payload' || d.state === 'end') this.interrupt(conn, g.stream, g.dir, d.channel);
    this.toResync(d);
  }

  onEnd(e: TcpEnd): void {
    const conn = this.conns.get(e.stream);
    if (!conn) return;
    const d = conn.dirs[e.dir];
    if (d.held) this.release(conn, e.stream, e.dir, true);
    d.state = 'dead';
    d.scan = Buffer.alloc(0);
    d.payload = EMPTY;
    if (e.closed) {
      this.drain(conn, e.stream);
      this.conns.delete(e.stream);
    }
  }

  private conn(stream: number): Conn {
    let c = this.conns.get(stream);
    if (!c) {
      c = { dirs: [newDir(), newDir()], channels: new Map(), pending: 0, contents: 0, counted: false };
      this.conns.set(stream, c);
    }
    return c;
  }

  private channel(conn: Conn, id: number): Channel {
    let ch = conn.channels.get(id);
    if (!ch) {
      ch = { pending: [], content: [null, null] };
      conn.channels.set(id, ch);
    }
    return ch;
  }

  /**
   * Whether the first bytes of a direction joined mid-stream start at a frame, judged on the
   * bytes alone (`final`: no more will come before a hole or the end): the protocol header, a
   * whole frame with its frame-end when it is at most `ALIGN_WHOLE` bytes, or the first 11
   * bytes of a larger one. `more` while the bytes cannot tell yet.
   */
  private aligned(b: Uint8Array, final: boolean): Verdict {
    if (b.length === 0) return final ? 'no' : 'more';
    if (b[0] === 0x41) {
      if (b.length < PROTOCOL_HEADER.length) return final ? 'no' : 'more';
      return PROTOCOL_HEADER.equals(Buffer.from(b.buffer, b.byteOffset, PROTOCOL_HEADER.length)) ? 'yes' : 'no';
    }
    if (b.length < 7) return judgeFrame(b, this.maxFrame, true) === 'no' || final ? 'no' : 'more';
    const size = ((b[3]! << 24) | (b[4]! << 16) | (b[5]! << 8) | b[6]!) >>> 0;
    // Judged on a prefix that the frame's own size decides, never on how far past it a chunk went.
    const need = 8 + size <= ALIGN_WHOLE ? 8 + size : 11;
    const v = judgeFrame(b.subarray(0, need), this.maxFrame, true);
    if (typeof v === 'number') return 'yes';
    if (v === 'no') return 'no';
    // `more` on the whole prefix: a larger frame whose first 11 bytes are plausible.
    if (b.length >= need) return 'yes';
    return final ? 'no' : 'more';
  }

  /** Ends the wait of a direction joined mid-stream: its held bytes go through framing, from a frame or resyncing. */
  private release(conn: Conn, stream: number, dir: TcpDirection, final: boolean): void {
    const d = conn.dirs[dir];
    const held = d.held!;
    d.held = null;
    if (this.aligned(held.bytes, final) !== 'yes') this.toResync(d);
    held.replay((buf, from, to, sec, nsec) => {
      d.now = { sec, nsec };
      this.feed(conn, stream, dir, buf, from, to);
    });
  }

  private toResync(d: Dir): void {
    d.state = 'resync';
    d.headHave = 0;
    d.payload = EMPTY;
    d.remaining = 0;
    d.scan = Buffer.alloc(0);
    d.scanned = 0;
    this.counters.resyncs++;
  }

  private feed(conn: Conn, stream: number, dir: TcpDirection, input: Uint8Array, from: number, end: number): void {
    const d = conn.dirs[dir];
    let buf = input;
    let pos = from;
    let to = end;
    /** Out of sync: rescan from `bytes` (a frame may start inside what was just rejected). */
    const rescan = (bytes: Uint8Array): void => {
      this.counters.malformed++;
      this.toResync(d);
      buf = Buffer.concat([bytes, buf.subarray(pos, to)]);
      pos = 0;
      to = buf.length;
    };
    while (pos < to) {
      switch (d.state) {
        case 'dead':
          return;
        case 'head': {
          if (d.headHave === 0) {
            d.start = d.now;
            if (buf[pos] === 0x41) {
              d.state = 'protocol';
              break;
            }
          }
          while (d.headHave < 7 && pos < to) d.head[d.headHave++] = buf[pos++]!;
          if (d.headHave < 7) return;
          d.headHave = 0;
          const h = d.head;
          d.type = h[0]!;
          d.channel = (h[1]! << 8) | h[2]!;
          d.size = ((h[3]! << 24) | (h[4]! << 16) | (h[5]! << 8) | h[6]!) >>> 0;
          const known = d.type === FRAME_METHOD || d.type === FRAME_HEADER || d.type === FRAME_BODY || d.type === FRAME_HEARTBEAT;
          if (!known || d.size > this.maxFrame) {
            rescan(h.subarray(1, 7));
            break;
          }
          d.remaining = d.size;
          d.cut = false;
          d.payloadHave = 0;
          d.payload = d.type === FRAME_BODY ? EMPTY : new Uint8Array(Math.min(d.size, KEEP));
          d.state = d.size === 0 ? 'end' : 'payload';
          break;
        }
        case 'protocol': {
          while (d.headHave < 8 && pos < to) d.head[d.headHave++] = buf[pos++]!;
          if (d.headHave < 8) return;
          d.headHave = 0;
          if (d.head[0] !== 0x41 || d.head[1] !== 0x4d || d.head[2] !== 0x51 || d.head[3] !== 0x50) {
            rescan(d.head.subarray(1, 8));
            break;
          }
          this.countStream(conn);
          d.state = 'head';
          break;
        }
        case 'payload': {
          const n = Math.min(d.remaining, to - pos);
          if (d.type === FRAME_BODY) this.bodyBytes(conn, dir, d.channel, buf, pos, n);
          else {
            const room = Math.min(n, d.payload.length - d.payloadHave);
            if (room > 0) {
              d.payload.set(buf.subarray(pos, pos + room), d.payloadHave);
              d.payloadHave += room;
            }
          }
          pos += n;
          d.remaining -= n;
          if (d.remaining === 0) d.state = 'end';
          break;
        }
        case 'end': {
          if (buf[pos] !== FRAME_END) {
            this.interrupt(conn, stream, dir, d.channel);
            rescan(EMPTY);
            break;
          }
          pos++;
          d.state = 'head';
          this.frame(conn, stream, dir);
          break;
        }
        case 'resync': {
          const found = this.scan(d, buf.subarray(pos, to));
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
   * In `resync`: adds bytes to the scan window and looks for a plausible frame. Returns the
   * bytes from that frame on (framing restarts there), or null while none is found.
   */
  private scan(d: Dir, add: Uint8Array): Buffer | null {
    d.scan = d.scan.length === 0 ? Buffer.from(add) : Buffer.concat([d.scan, add]);
    const buf = d.scan;
    for (let p = 0; p < buf.length; p++) {
      const v = judgeFrame(buf.subarray(p), this.maxFrame, false);
      if (v === 'more') {
        this.skipScan(d, p);
        return null;
      }
      if (typeof v === 'number') {
        this.counters.skippedBytes += p;
        d.state = 'head';
        d.headHave = 0;
        d.scan = Buffer.alloc(0);
        return buf.subarray(p);
      }
    }
    this.skipScan(d, buf.length);
    return null;
  }

  private skipScan(d: Dir, n: number): void {
    d.scanned += n;
    this.counters.skippedBytes += n;
    if (n > 0) d.scan = Buffer.from(d.scan.subarray(n));
    if (d.scanned > MAX_RESYNC_SCAN) {
      d.state = 'dead';
      d.scan = Buffer.alloc(0);
    }
  }

  private countStream(conn: Conn): void {
    if (!conn.counted) {
      conn.counted = true;
      this.counters.amqpStreams++;
    }
  }

  /** A whole frame (frame-end checked) of one direction. */
  private frame(conn: Conn, stream: number, dir: TcpDirection): void {
    const d = conn.dirs[dir];
    this.counters.frames++;
    this.countStream(conn);
    const payload = d.payload;
    const have = d.payloadHave;
    d.payload = EMPTY;
    switch (d.type) {
      case FRAME_METHOD: {
        const m = readMethod(payload, have);
        if (!m) {
          this.counters.malformed++;
          return;
        }
        this.method(conn, stream, dir, d.channel, m, d.start);
        return;
      }
      case FRAME_HEADER: {
        const content = this.channel(conn, d.channel).content[dir];
        const h = readContentHeader(payload, have);
        if (!content || content.headerSeen || !h) {
          this.counters.malformed++;
          return;
        }
        content.headerSeen = true;
        content.bodySize = h.bodySize;
        content.properties = h.properties;
        if (h.bodySize === 0) this.contentDone(conn, stream, dir, d.channel);
        return;
      }
      case FRAME_BODY: {
        const content = this.channel(conn, d.channel).content[dir];
        if (content && content.headerSeen && content.received >= content.bodySize) this.contentDone(conn, stream, dir, d.channel);
        return;
      }
      default:
        return; // heartbeat
    }
  }

  private bodyBytes(conn: Conn, dir: TcpDirection, channel: number, buf: Uint8Array, pos: number, n: number): void {
    const content = this.channel(conn, channel).content[dir];
    if (!content || !content.headerSeen) return;
    content.received += n;
    const keep = content.cut ? 0 : Math.min(n, this.maxBody - content.kept);
    if (keep > 0) {
      // A copy: the chunk is valid only during the call (Buffer#slice would be a view of it).
      content.parts.push(Buffer.from(buf.subarray(pos, pos + keep)));
      content.kept += keep;
    }
  }

  private method(conn: Conn, stream: number, dir: TcpDirection, channelId: number, m: Method, start: Time): void {
    const ch = this.channel(conn, channelId);
    const other: TcpDirection = dir === 0 ? 1 : 0;
    // A method ends content still being received on its channel.
    if (ch.content[dir]) this.interrupt(conn, stream, dir, channelId);
    const message: EntryMessage = { headers: m.args, body: null, body_size: 0, truncated: false };
    const call: Call = { method: m, dir, start, message, index: -1 };

    // A reply: pair with the oldest request of the other side that waits for it.
    const waiting = ch.pending.findIndex((p) => p.dir === other && p.method.classId === m.classId && p.method.def.replies?.includes(m.methodId) === true);
    if (waiting >= 0) {
      const req = ch.pending.splice(waiting, 1)[0]!;
      conn.pending--;
      if (m.def.content) {
        this.startContent(conn, stream, ch, dir, this.newContent(m, start, req, req.index));
        return;
      }
      this.emitCall(stream, channelId, req, call, undefined);
      // A closed channel's state goes (its number may be reused).
      if (m.classId === CLASS_CHANNEL && m.def.name === 'channel.close-ok' && ch.pending.length === 0 && !ch.content[0] && !ch.content[1]) conn.channels.delete(channelId);
      return;
    }
    call.index = this.take(stream);
    const isReply = m.def.replies === undefined && /-(ok|empty)$/.test(m.def.name);
    if (isReply) {
      if (m.def.content) this.startContent(conn, stream, ch, dir, this.newContent(m, start, null, call.index));
      else this.emitCall(stream, channelId, null, call, 'pair-not-found');
      return;
    }
    if (m.classId === CLASS_CHANNEL || m.classId === CLASS_CONNECTION) {
      const isClose = m.def.name === 'channel.close' || m.def.name === 'connection.close';
      if (isClose) {
        // The closing side refuses what the other side still waits for.
        const chans = m.classId === CLASS_CONNECTION ? [...conn.channels.entries()] : [[channelId, ch] as const];
        for (const [id, c] of chans) {
          for (const req of c.pending.filter((p) => p.dir === other)) {
            c.pending.splice(c.pending.indexOf(req), 1);
            conn.pending--;
            this.emitCall(stream, id, req, call, undefined, m);
          }
        }
      }
    }
    if (m.def.content) {
      this.startContent(conn, stream, ch, dir, this.newContent(m, start, null, call.index));
      return;
    }
    if (m.def.replies && !m.noWait) {
      if (conn.pending >= MAX_PENDING) this.giveUpOldest(conn, stream);
      ch.pending.push(call);
      conn.pending++;
      return;
    }
    // Asynchronous, or synchronous sent with no-wait: no reply is due.
    this.emitCall(stream, channelId, call, null, undefined);
  }

  private newContent(m: Method, start: Time, request: Call | null, index: number): Content {
    return { method: m, start, headerSeen: false, bodySize: 0, received: 0, properties: [], parts: [], kept: 0, cut: false, request, index };
  }

  private startContent(conn: Conn, stream: number, ch: Channel, dir: TcpDirection, content: Content): void {
    if (conn.contents >= MAX_CONTENTS) {
      // Too many messages in progress at once: the one that started first comes out cut.
      let oldest: [number, TcpDirection, Content] | null = null;
      for (const [id, c] of conn.channels) {
        for (const dd of [0, 1] as const) {
          const x = c.content[dd];
          if (x && (!oldest || x.index < oldest[2].index)) oldest = [id, dd, x];
        }
      }
      if (oldest) this.contentDone(conn, stream, oldest[1], oldest[0], true);
    }
    ch.content[dir] = content;
    conn.contents++;
  }

  /** Too many requests waiting: the oldest comes out unanswered. */
  private giveUpOldest(conn: Conn, stream: number): void {
    let oldest: [number, Channel, Call] | null = null;
    for (const [id, c] of conn.channels) {
      const x = c.pending[0];
      if (x && (!oldest || x.index < oldest[2].index)) oldest = [id, c, x];
    }
    if (!oldest) return;
    oldest[1].pending.shift();
    conn.pending--;
    this.emitCall(stream, oldest[0], oldest[2], null, 'pair-not-found');
  }

  /** The next entry index of a stream. */
  private take(stream: number): number {
    const index = this.nextIndex.get(stream) ?? 0;
    this.nextIndex.set(stream, index + 1);
    return index;
  }

  /** Content fully received: its method comes out (alone, or as the reply to basic.get). */
  private contentDone(conn: Conn, stream: number, dir: TcpDirection, channelId: number, cut = false): void {
    const ch = this.channel(conn, channelId);
    const c = ch.content[dir];
    ch.content[dir] = null;
    if (!c) return;
    conn.contents--;
    const truncated = cut || c.cut || c.kept < c.received || c.received < c.bodySize || !c.headerSeen;
    const message: EntryMessage = {
      headers: [...c.method.args, ...c.properties],
      body: c.kept > 0 ? Buffer.concat(c.parts) : null,
      body_size: c.headerSeen ? c.bodySize : 0,
      truncated,
    };
    const call: Call = { method: c.method, dir, start: c.start, message, index: c.index };
    const damaged = cut || c.cut || !c.headerSeen || c.received < c.bodySize;
    if (c.request) this.emitCall(stream, channelId, c.request, call, damaged ? 'dissection' : undefined);
    else if (/-ok$/.test(c.method.def.name)) this.emitCall(stream, channelId, null, call, 'pair-not-found');
    else this.emitCall(stream, channelId, call, null, damaged ? 'dissection' : undefined);
  }

  /** Content on this channel and direction stops short (another method, a gap, a bad frame). */
  private interrupt(conn: Conn, stream: number, dir: TcpDirection, channelId: number): void {
    const ch = conn.channels.get(channelId);
    if (ch?.content[dir]) this.contentDone(conn, stream, dir, channelId, true);
  }

  /** End of the connection: content in progress comes out cut, requests unanswered. */
  private drain(conn: Conn, stream: number): void {
    for (const [id, ch] of conn.channels) {
      for (const dir of [0, 1] as const) if (ch.content[dir]) this.contentDone(conn, stream, dir, id, true);
      for (const req of ch.pending.splice(0)) this.emitCall(stream, id, req, null, 'pair-not-found');
    }
    conn.channels.clear();
    conn.pending = 0;
    conn.contents = 0;
  }

  /**
   * Emits one entry: `req` alone (asynchronous, or no reply came), a request with its reply,
   * a reply alone (`req` null), or a request refused by a close (`closedBy`).
   */
  private emitCall(stream: number, channel: number, req: Call | null, res: Call | null, error: EntryError | undefined, closedBy?: Method): void {
    const main = (req ?? res)!;
    const index = main.index;
    const m = main.method;
    const reply = res?.method;
    const exchange = m.exchange || reply?.exchange || '';
    const routingKey = m.routingKey || reply?.routingKey || '';
    const queue = m.queue || reply?.queue || '';
    const ending = closedBy ?? (m.replyCode !== 0 ? m : undefined);
    const replyCode = ending?.replyCode ?? 0;
    const replyText = ending?.replyText ?? '';
    const path = queue !== '' && !m.def.content ? queue : m.def.content ? `${exchange}/${routingKey}` : exchange;
    const t0 = main.start;
    const entry: AmqpEntry = {
      protocol: 'amqp',
      stream,
      index,
      timestamp: t0.sec * 1e6 + Math.floor(t0.nsec / 1000),
      elapsed_time: req && res ? Math.round(((res.start.sec - t0.sec) * 1e9 + (res.start.nsec - t0.nsec)) / 1000) : 0,
      method: m.def.name,
      path,
      url: path,
      status_code: replyCode,
      request: req ? req.message : null,
      response: res ? res.message : null,
      amqp_method: m.def.name,
      amqp_channel: channel,
      amqp_exchange: exchange,
      amqp_routing_key: routingKey,
      amqp_queue: queue,
      amqp_reply_code: replyCode,
      amqp_reply_text: replyText,
    };
    if (error) {
      entry.error = error;
      this.counters.errors[error]++;
    }
    // 200 is the reply code of a normal close.
    if (replyCode !== 0 && replyCode !== 200) entry.failure = `${replyCode} ${replyText}`.trim();
    this.counters.entries++;
    this.emit(entry);
  }
}
