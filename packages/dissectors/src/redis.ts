import type { TcpChunk, TcpDirection, TcpEnd, TcpGap } from '@kubeshark-mcp/capture';
import type { Entry, EntryError, EntryMessage } from './entry';
import type { StreamOpen, TcpDissector, TcpProtocol, Verdict } from './stream';

/**
 * Redis dissector (RESP2 and RESP3): one `RedisEntry` per command and its reply, plus one per
 * message the server pushes outside the request/reply flow. Pure: no I/O, no timers.
 *
 * - Parsing is streaming: a value is read line by line and bulk payloads are counted, not
 *   buffered, so a bulk length claim (up to 2^31) costs nothing until its bytes arrive and
 *   then only the bounded part kept (`maxValueBytes` per string, `maxBodySize` of raw bytes per
 *   message). All RESP3 types are understood: simple string `+`, error `-`, integer `:`, bulk
 *   string `$`, array `*`, null `_` (and RESP2's `$-1`, `*-1`), boolean `#`, double `,`, big
 *   number `(`, bulk error `!`, verbatim string `=`, map `%`, set `~`, attribute `|` (kept on
 *   the value it annotates), push `>`, and streamed strings/aggregates (`$?`, `*?`, `;`, `.`).
 * - Client direction: arrays of bulk strings, or inline commands (a text line split on blanks).
 * - Pairing: replies pair with commands in order (pipelining). SUBSCRIBE-family commands take
 *   one confirmation per channel (UNSUBSCRIBE without channels: one per known subscription).
 * - `CLIENT REPLY OFF` / `SKIP`: the commands the server does not answer are entries without a
 *   response (and without error). After `MONITOR`, each command the server reports (a simple
 *   string nobody asked for) is an entry of its own, method `monitor`.
 * - Pub/sub: once subscribed, arrays whose first element is `message`, `pmessage` or
 *   `smessage` (RESP2), and every RESP3 push (`>`) that is not a subscription confirmation
 *   (after `HELLO 3`), are not replies: each becomes an entry of its own, `method` the push
 *   kind in lower case (`message`, `pmessage`, `smessage`, `invalidate`, ...), `path` the
 *   channel, `request` null, `response` the pushed bytes, no error.
 * - Gaps and protocol errors: the message being read is ended (`dissection`) and the direction
 *   resumes at the start of a later chunk (a packet) whose first line is a valid RESP type line.
 *   After a hole in the reply direction replies may be missing, so the next reply pairs with
 *   the latest command sent before it and the earlier unanswered ones get `pair-not-found`.
 *   A reply with no command to pair with (one that started before any waiting command was
 *   sent: its command was lost in a hole or before the capture) is an entry without request,
 *   `pair-not-found`.
 * - Per connection at most 1024 exchanges wait (then the oldest is given up) and 4 MiB of
 *   their raw bytes are kept (then bodies are `truncated`).
 * - When the handshake was not captured, the client side is the one whose first value is an
 *   array of bulk strings or an inline line starting with a known command. Until the first
 *   bytes of a direction can tell (at most 256 bytes), what both directions send is held, in
 *   order, so the roles never depend on how the stream was cut into chunks.
 */

/** Names of RESP types, as in `redis_response_type`. */
export type RespType =
  | 'simple-string'
  | 'error'
  | 'integer'
  | 'bulk-string'
  | 'array'
  | 'null'
  | 'boolean'
  | 'double'
  | 'big-number'
  | 'bulk-error'
  | 'verbatim-string'
  | 'map'
  | 'set'
  | 'attribute'
  | 'push'
  | 'inline';

const TYPE_OF: Record<string, RespType> = {
  '+': 'simple-string',
  '-': 'error',
  ':': 'integer',
  $: 'bulk-string',
  '*': 'array',
  _: 'null',
  '#': 'boolean',
  ',': 'double',
  '(': 'big-number',
  '!': 'bulk-error',
  '=': 'verbatim-string',
  '%': 'map',
  '~': 'set',
  '|': 'attribute',
  '>': 'push',
};

/** A decoded RESP value, bounded: long strings keep their first bytes, large aggregates their first elements. */
export interface RespValue {
  type: RespType;
  /** String types, numbers, booleans: the bytes of the value (bulk payload or line text), at most `maxValueBytes`. */
  data: Buffer | null;
  /** String types: the length in bytes; aggregates: the number of elements (maps and attributes: keys plus values); -1 for RESP2 nulls. */
  size: number;
  /** Aggregates: the elements kept, in order (a map's keys and values alternate). */
  items: RespValue[];
  /** Some bytes or elements were not kept. */
  truncated: boolean;
  /** RESP2 null (`$-1` or `*-1`): the marker it came as. */
  nullOf?: 'bulk-string' | 'array';
  /** RESP3 attribute sent before the value. */
  attribute?: RespValue;
}

export interface RedisEntry extends Entry {
  protocol: 'redis';
  /** Command name upper-case (`GET`, `CLIENT SETNAME` for container commands); push entries: the push kind (`message`). */
  redis_command: string;
  /** First key the command names, when it has one. */
  redis_key?: string;
  /** Arguments after the command (and subcommand), key included, at most 32, each at most 256 characters. */
  redis_args: string[];
  /** Short text of the reply ('' without one), at most 256 characters. */
  redis_response: string;
  /** RESP type of the reply ('' without one). */
  redis_response_type: RespType | '';
}

export interface RedisDissectorOptions {
  /** Raw RESP bytes kept per message in `request.body` / `response.body`. Default 64 KiB. */
  maxBodySize?: number;
  /** Bytes kept per string value when decoding. Default 4 KiB. */
  maxValueBytes?: number;
}

export interface RedisDissectorStats {
  entries: number;
  errors: Record<EntryError, number>;
  /** Entries for pushed messages (pub/sub, RESP3 pushes). */
  pushes: number;
  /** Protocol errors and gaps after which a direction resynchronised. */
  resyncs: number;
}

const DEFAULT_MAX_BODY = 64 * 1024;
const DEFAULT_MAX_VALUE = 4 * 1024;
/** First bytes of a direction judged to tell a client from a server. */
const ROLE_PROBE = 256;
/** Longest type line (or inline command) accepted. */
const MAX_LINE = 64 * 1024;
/** Elements kept per aggregate, and nodes per message. */
const MAX_ITEMS = 1024;
const MAX_NODES = 4096;
/** Value bytes kept per message over all its strings. */
const MAX_VALUE_BUDGET = 256 * 1024;
const MAX_DEPTH = 64;
/** Redis refuses bulk strings over 512 MB; larger claims are garbage. */
const MAX_BULK = 512 * 1024 * 1024;
const MAX_AGGREGATE = 2 ** 31;
const MAX_ARGS = 32;
/**
 * Per connection: exchanges waiting to be emitted (a client pipelining without answers, or a
 * one-sided capture), and raw bytes kept for them. Past the first, the oldest is given up
 * (`pair-not-found`; a reply still coming for it would then pair with the next command); past
 * the second, further bodies are not kept (`truncated`).
 */
const MAX_PENDING = 1024;
const MAX_PENDING_BYTES = 4 * 1024 * 1024;
const MAX_TEXT = 256;

/** Commands whose first word is a container (`CLIENT SETNAME`): the subcommand is part of the name. */
const CONTAINERS = new Set(['ACL', 'CLIENT', 'CLUSTER', 'COMMAND', 'CONFIG', 'DEBUG', 'FUNCTION', 'LATENCY', 'MEMORY', 'MODULE', 'OBJECT', 'PUBSUB', 'SCRIPT', 'SLOWLOG', 'XGROUP', 'XINFO']);
/** Commands (and container subcommands) whose first argument is not a key. */
const NO_KEY = new Set([
  'ACL', 'AUTH', 'BGREWRITEAOF', 'BGSAVE', 'CLIENT', 'CLUSTER', 'COMMAND', 'CONFIG', 'DBSIZE', 'DEBUG', 'DISCARD', 'ECHO', 'EXEC', 'FAILOVER', 'FLUSHALL', 'FLUSHDB', 'FUNCTION', 'HELLO', 'INFO', 'KEYS', 'LASTSAVE', 'LATENCY',
  'MEMORY STATS', 'MEMORY DOCTOR', 'MEMORY MALLOC-STATS', 'MEMORY PURGE', 'MODULE', 'MONITOR', 'MULTI', 'PING', 'PSUBSCRIBE', 'PUBLISH', 'PUBSUB', 'PUNSUBSCRIBE', 'QUIT', 'RANDOMKEY', 'READONLY', 'READWRITE', 'REPLICAOF',
  'RESET', 'ROLE', 'SAVE', 'SCAN', 'SCRIPT', 'SELECT', 'SHUTDOWN', 'SLAVEOF', 'SLOWLOG', 'SPUBLISH', 'SSUBSCRIBE', 'SUBSCRIBE', 'SUNSUBSCRIBE', 'SWAPDB', 'SYNC', 'PSYNC', 'TIME', 'UNSUBSCRIBE', 'UNWATCH', 'WAIT', 'WAITAOF',
  'EVAL', 'EVALSHA', 'EVAL_RO', 'EVALSHA_RO', 'FCALL', 'FCALL_RO', 'XREAD', 'XREADGROUP', 'ZUNION', 'ZINTER', 'ZDIFF', 'ZUNIONSTORE', 'ZINTERSTORE', 'ZDIFFSTORE', 'SINTERCARD', 'ZINTERCARD', 'LMPOP', 'ZMPOP', 'BLMPOP', 'BZMPOP',
]);
/** Commands recognised as inline commands by detection (first word of a client line). */
const INLINE_COMMANDS = new Set(['PING', 'ECHO', 'INFO', 'GET', 'SET', 'DEL', 'EXISTS', 'KEYS', 'AUTH', 'SELECT', 'HELLO', 'QUIT', 'MONITOR', 'SUBSCRIBE', 'PSUBSCRIBE', 'PUBLISH', 'INCR', 'DECR', 'LPUSH', 'RPUSH', 'LRANGE', 'HGET', 'HSET', 'HGETALL', 'MGET', 'MSET', 'EXPIRE', 'TTL', 'TYPE', 'SCAN', 'DBSIZE', 'FLUSHALL', 'FLUSHDB', 'CONFIG', 'CLIENT', 'COMMAND', 'MULTI', 'EXEC', 'SADD', 'SMEMBERS', 'ZADD', 'ZRANGE', 'XADD', 'XRANGE', 'XREAD', 'EVAL']);
const SUBSCRIBE_KINDS = new Set(['subscribe', 'psubscribe', 'ssubscribe', 'unsubscribe', 'punsubscribe', 'sunsubscribe']);
const MESSAGE_KINDS = new Set(['message', 'pmessage', 'smessage']);

interface Time {
  sec: number;
  nsec: number;
}

/** One RESP message (a top-level value) with its raw bytes. */
interface Msg {
  value: RespValue | null;
  start: Time;
  parts: Buffer[];
  kept: number;
  size: number;
  cut: boolean;
  error: EntryError | undefined;
}

interface Exchange {
  request: Msg | null;
  replies: Msg[];
  /** Replies still expected (1 for most commands; one per channel for SUBSCRIBE and friends). */
  expect: number;
  done: boolean;
  /** The push kind, for an entry of a pushed message. */
  push: string | null;
  command: string;
  args: string[];
  key: string | undefined;
  /** No reply will come (the connection ended, or a later reply took its place). */
  unanswered: boolean;
}

interface Frame {
  value: RespValue;
  /** Elements left; -1 for a streamed aggregate (ends with `.`). */
  left: number;
}

/** Streaming parser state of one direction. */
interface Dir {
  isClient: boolean | null;
  seen: boolean;
  /** Skip the rest of the current chunk and resume at the start of a later one. */
  resync: boolean;
  afterGap: boolean;
  line: Buffer[];
  lineLen: number;
  stack: Frame[];
  /** Payload bytes plus the CRLF still to read for the current bulk value. */
  blobLeft: number;
  blob: RespValue | null;
  /** The `$?` string whose `;` chunks are being read. */
  streamed: RespValue | null;
  attr: { depth: number; value: RespValue } | null;
  nodes: number;
  /** Value bytes kept for the message being read (bounded by MAX_VALUE_BUDGET). */
  valueBytes: number;
  msg: Msg | null;
  /** Trailing bytes of a bulk payload seen so far (must end in CRLF). */
  tail: number[];
}

/** Bytes received before the roles were known, kept in arrival order. */
interface HeldChunk {
  dir: TcpDirection;
  bytes: Buffer;
  time: Time;
}

interface Conn {
  dirs: [Dir, Dir];
  /** Until the roles are known: what each direction sent, in order, and each one's first bytes (judged). */
  held: HeldChunk[];
  probes: [Buffer, Buffer];
  exchanges: Exchange[];
  /** Subscriptions known from confirmations (the count the last confirmation gave). */
  subscriptions: number;
  /** Raw bytes kept in messages not yet emitted. */
  keptBytes: number;
  /** `CLIENT REPLY OFF` is in force; `CLIENT REPLY SKIP` applies to the next command. */
  replyOff: boolean;
  skipNext: boolean;
  /** MONITOR was answered: simple strings nobody asked for are the commands it reports. */
  monitor: boolean;
}

const newDir = (): Dir => ({ isClient: null, seen: false, resync: false, afterGap: false, line: [], lineLen: 0, stack: [], blobLeft: 0, blob: null, streamed: null, attr: null, nodes: 0, valueBytes: 0, msg: null, tail: [] });

const EMPTY = Buffer.alloc(0);

const newValue = (type: RespType, size: number): RespValue => ({ type, data: null, size, items: [], truncated: false });

/** Text of a string-like value, as UTF-8. */
export function respText(v: RespValue | undefined): string {
  if (!v || !v.data) return '';
  return v.data.toString('utf8');
}

const clip = (s: string, n = MAX_TEXT): string => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/** Short rendering of a reply. */
export function renderResp(v: RespValue, budget = MAX_TEXT): string {
  const out: string[] = [];
  let used = 0;
  const put = (s: string): boolean => {
    if (used >= budget) return false;
    out.push(s);
    used += s.length;
    return true;
  };
  const walk = (x: RespValue): void => {
    switch (x.type) {
      case 'null':
        put('(nil)');
        return;
      case 'array':
      case 'set':
      case 'push':
      case 'map':
      case 'attribute':
      case 'inline': {
        const [open, close] = x.type === 'map' || x.type === 'attribute' ? ['{', '}'] : x.type === 'set' ? ['~[', ']'] : x.type === 'push' ? ['>[', ']'] : ['[', ']'];
        put(open);
        x.items.forEach((it, i) => {
          if (used >= budget) return;
          if (i > 0) put(x.type === 'map' || x.type === 'attribute' ? (i % 2 === 1 ? ': ' : ', ') : ', ');
          walk(it);
        });
        if (x.truncated || x.items.length < x.size) put(', …');
        put(close);
        return;
      }
      case 'verbatim-string': {
        const t = respText(x);
        put(t.length >= 4 && t[3] === ':' ? t.slice(4) : t);
        return;
      }
      case 'bulk-string':
        put(JSON.stringify(respText(x)));
        return;
      default:
        put(respText(x));
    }
  };
  walk(v);
  return clip(out.join(''), budget);
}

/**
 * Decodes a sequence of complete RESP values (a message body as the dissector keeps it), for
 * tools and tests; `client` parses inline commands too. Throws on malformed input.
 */
export function decodeResp(bytes: Uint8Array, client = false, maxValueBytes = DEFAULT_MAX_VALUE): RespValue[] {
  const values: RespValue[] = [];
  const d = newDir();
  d.isClient = client;
  const p = new RespParser(maxValueBytes, (v) => values.push(v));
  if (!p.parse(d, bytes, 0, bytes.length, () => undefined)) throw new Error('malformed RESP');
  if (d.stack.length > 0 || d.lineLen > 0 || d.blobLeft > 0 || d.streamed) throw new Error('incomplete RESP');
  return values;
}

/** The streaming RESP reader; state lives in `Dir` so one parser serves every direction. */
class RespParser {
  constructor(
    private readonly maxValue: number,
    private readonly done: (v: RespValue, d: Dir) => void,
  ) {}

  /**
   * Parses buf[from, to); `begin(pos)` is called where a new top-level message starts, and
   * every byte consumed is reported through `raw`. Returns false on a protocol error.
   */
  parse(d: Dir, buf: Uint8Array, from: number, to: number, begin: (pos: number) => void, raw?: (a: number, b: number) => void): boolean {
    let i = from;
    let segStart = from;
    const flush = (end: number): void => {
      if (raw && end > segStart) raw(segStart, end);
      segStart = end;
    };
    while (i < to) {
      if (d.blobLeft > 0) {
        const n = Math.min(d.blobLeft, to - i);
        const payloadLeft = d.blobLeft - 2;
        const take = Math.max(0, Math.min(n, payloadLeft));
        const b = d.blob!;
        if (take > 0) {
          const have = b.data ? b.data.length : 0;
          const keep = Math.max(0, Math.min(take, this.maxValue - have, MAX_VALUE_BUDGET - d.valueBytes));
          d.valueBytes += keep;
          if (keep > 0) b.data = b.data ? Buffer.concat([b.data, Buffer.from(buf.subarray(i, i + keep))]) : Buffer.from(buf.subarray(i, i + keep));
          if (keep < take) b.truncated = true;
        }
        for (let k = i + take; k < i + n; k++) d.tail.push(buf[k]!);
        d.blobLeft -= n;
        i += n;
        if (d.blobLeft === 0) {
          const ok = d.tail.length === 2 && d.tail[0] === 0x0d && d.tail[1] === 0x0a;
          d.tail = [];
          d.blob = null;
          if (!ok) return false;
          flush(i);
          if (d.streamed) continue; // a `;` chunk of a streamed string: its value is the whole string
          if (!this.complete(d, b)) return false;
        }
        continue;
      }
      if (d.lineLen === 0 && d.stack.length === 0 && !d.streamed) begin(i);
      let nl = -1;
      for (let k = i; k < to; k++) {
        if (buf[k] === 0x0a) {
          nl = k;
          break;
        }
      }
      if (nl < 0) {
        d.lineLen += to - i;
        if (d.lineLen > MAX_LINE) return false;
        d.line.push(Buffer.from(buf.subarray(i, to)));
        flush(to);
        return true;
      }
      let line = Buffer.from(buf.subarray(i, nl));
      if (d.line.length > 0) line = Buffer.concat([...d.line, line]);
      d.line = [];
      d.lineLen = 0;
      i = nl + 1;
      if (line.length > MAX_LINE) return false;
      if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
      flush(i);
      if (!this.line(d, line)) return false;
    }
    flush(to);
    return true;
  }

  private line(d: Dir, line: Buffer): boolean {
    if (d.streamed) {
      // Chunks of a streamed string: `;<len>` then the bytes; `;0` ends it.
      if (line[0] !== 0x3b) return false;
      const n = intOf(line.toString('latin1', 1));
      if (n === null || n < 0 || n > MAX_BULK) return false;
      if (n === 0) {
        const v = d.streamed;
        d.streamed = null;
        return this.complete(d, v);
      }
      d.streamed.size += n;
      d.blob = d.streamed;
      d.blobLeft = n + 2;
      return true;
    }
    const top = d.stack.length === 0;
    if (top && d.isClient && line.length > 0 && line[0] !== 0x2a) return this.inline(d, line);
    if (top && d.isClient && line.length === 0) return true; // blank lines between inline commands
    if (line.length === 0) return false;
    const marker = String.fromCharCode(line[0]!);
    const rest = line.toString('latin1', 1);
    const type = TYPE_OF[marker];
    if (marker === '.') {
      const f = d.stack[d.stack.length - 1];
      if (!f || f.left !== -1 || rest !== '') return false;
      d.stack.pop();
      f.value.size = f.value.items.length;
      return this.complete(d, f.value);
    }
    if (!type) return false;
    d.nodes++;
    switch (marker) {
      case '+':
      case '-': {
        const v = newValue(type, line.length - 1);
        this.keep(d, v, line.subarray(1));
        return this.complete(d, v);
      }
      case ':':
      case '(': {
        if (!/^[-+]?\d+$/.test(rest)) return false;
        const v = newValue(type, rest.length);
        this.keep(d, v, line.subarray(1));
        return this.complete(d, v);
      }
      case ',': {
        if (!/^([-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?|[-+]?inf|nan)$/i.test(rest)) return false;
        const v = newValue(type, rest.length);
        this.keep(d, v, line.subarray(1));
        return this.complete(d, v);
      }
      case '#': {
        if (rest !== 't' && rest !== 'f') return false;
        const v = newValue(type, 1);
        this.keep(d, v, line.subarray(1));
        return this.complete(d, v);
      }
      case '_':
        return rest === '' && this.complete(d, newValue('null', 0));
      case '$':
      case '!':
      case '=': {
        if (rest === '?' && marker === '$') {
          d.streamed = newValue(type, 0);
          return true;
        }
        const n = intOf(rest);
        if (n === null || n < -1 || n > MAX_BULK) return false;
        if (n === -1) {
          if (marker !== '$') return false;
          const v = newValue('null', -1);
          v.nullOf = 'bulk-string';
          return this.complete(d, v);
        }
        d.blob = newValue(type, n);
        d.blob.data = Buffer.alloc(0);
        d.blobLeft = n + 2;
        return true;
      }
      default: {
        // Aggregates: * % ~ | >
        if (d.stack.length >= MAX_DEPTH) return false;
        const pairs = marker === '%' || marker === '|' ? 2 : 1;
        if (rest === '?') {
          d.stack.push({ value: newValue(type, 0), left: -1 });
          return true;
        }
        const n = intOf(rest);
        if (n === null || n < -1 || n > MAX_AGGREGATE) return false;
        if (n === -1) {
          if (marker !== '*') return false;
          const v = newValue('null', -1);
          v.nullOf = 'array';
          return this.complete(d, v);
        }
        const v = newValue(type, n * pairs);
        if (n === 0) return this.complete(d, v);
        d.stack.push({ value: v, left: n * pairs });
        return true;
      }
    }
  }

  /** An inline command: words separated by blanks, double or single quotes group words. */
  private inline(d: Dir, line: Buffer): boolean {
    const text = line.toString('latin1');
    const words: string[] = [];
    const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
    for (let m = re.exec(text); m; m = re.exec(text)) words.push(m[1] ?? m[2] ?? m[3] ?? '');
    if (words.length === 0) return true;
    const v = newValue('inline', words.length);
    for (const w of words.slice(0, MAX_ITEMS)) {
      const item = newValue('bulk-string', w.length);
      this.keep(d, item, Buffer.from(w, 'latin1'));
      v.items.push(item);
    }
    v.truncated = words.length > MAX_ITEMS;
    return this.complete(d, v);
  }

  private keep(d: Dir, v: RespValue, bytes: Buffer): void {
    const n = Math.max(0, Math.min(bytes.length, this.maxValue, MAX_VALUE_BUDGET - d.valueBytes));
    d.valueBytes += n;
    v.data = Buffer.from(bytes.subarray(0, n));
    if (bytes.length > n) v.truncated = true;
  }

  /** A value is complete: add it to its parent, or report it when it is a whole message. */
  private complete(d: Dir, value: RespValue): boolean {
    let v = value;
    for (;;) {
      if (d.attr && d.attr.depth === d.stack.length && v.type !== 'attribute') {
        v.attribute = d.attr.value;
        d.attr = null;
      }
      const f = d.stack[d.stack.length - 1];
      if (!f) {
        d.nodes = 0;
        d.valueBytes = 0;
        this.done(v, d);
        return true;
      }
      if (f.value.items.length < MAX_ITEMS && d.nodes < MAX_NODES) f.value.items.push(v);
      else f.value.truncated = true;
      if (f.left > 0) f.left--;
      if (f.left !== 0) return true;
      d.stack.pop();
      v = f.value;
      if (v.type === 'attribute') {
        // Metadata for the value that follows at this level: not a value of its own.
        d.attr = { depth: d.stack.length, value: v };
        return true;
      }
    }
  }
}

function intOf(s: string): number | null {
  if (!/^-?\d{1,12}$/.test(s)) return null;
  return Number(s);
}

/** Words of a client command (inline or array of bulk strings); null when the value is not a command. */
function commandWords(v: RespValue): string[] | null {
  if (v.type !== 'array' && v.type !== 'inline') return null;
  if (v.items.length === 0) return null;
  const words: string[] = [];
  for (const it of v.items) {
    if (it.type !== 'bulk-string' && it.type !== 'simple-string') return null;
    words.push(it.data ? it.data.toString('utf8') : '');
  }
  return words;
}

/** Command name (two words for containers), arguments after it, and the first key. */
function describeCommand(words: string[]): { command: string; args: string[]; key: string | undefined } {
  const first = (words[0] ?? '').toUpperCase();
  let command = first;
  let rest = words.slice(1);
  if (CONTAINERS.has(first) && rest.length > 0) {
    command = `${first} ${rest[0]!.toUpperCase()}`;
    rest = rest.slice(1);
  }
  let key: string | undefined;
  if (first === 'EVAL' || first === 'EVALSHA' || first === 'EVAL_RO' || first === 'EVALSHA_RO' || first === 'FCALL' || first === 'FCALL_RO') {
    if (Number(rest[1]) > 0) key = rest[2];
  } else if (first === 'XREAD' || first === 'XREADGROUP') {
    const s = rest.findIndex((w) => w.toUpperCase() === 'STREAMS');
    if (s >= 0) key = rest[s + 1];
  } else if (['ZUNIONSTORE', 'ZINTERSTORE', 'ZDIFFSTORE'].includes(first)) {
    key = rest[0];
  } else if (['ZUNION', 'ZINTER', 'ZDIFF', 'SINTERCARD', 'ZINTERCARD', 'LMPOP', 'ZMPOP'].includes(first)) {
    if (Number(rest[0]) > 0) key = rest[1];
  } else if (first === 'BLMPOP' || first === 'BZMPOP') {
    if (Number(rest[1]) > 0) key = rest[2];
  } else if (CONTAINERS.has(first)) {
    // Container subcommands naming a key first: OBJECT ENCODING k, MEMORY USAGE k, XINFO STREAM k, XGROUP CREATE k.
    if (['OBJECT', 'MEMORY', 'XINFO', 'XGROUP'].includes(first) && !NO_KEY.has(command)) key = rest[0];
  } else if (!NO_KEY.has(first)) {
    key = rest[0];
  }
  return { command, args: rest.slice(0, MAX_ARGS).map((a) => clip(a)), key: key === undefined ? undefined : clip(key) };
}

/** `message`, `smessage`: kind, channel, payload; `pmessage`: kind, pattern, channel, payload; all bulk strings. */
function isMessageShape(v: RespValue, kind: string): boolean {
  return v.size === (kind === 'pmessage' ? 4 : 3) && v.items.every((i) => i.type === 'bulk-string');
}

/** The kind of a pub/sub reply (`message`, `subscribe`, ...) or null. */
function pubsubKind(v: RespValue): string | null {
  if ((v.type !== 'array' && v.type !== 'push') || v.items.length === 0) return null;
  const k = v.items[0]!;
  if (k.type !== 'bulk-string' && k.type !== 'simple-string') return null;
  return respText(k).toLowerCase();
}

/** Redis over reassembled TCP streams; see the module comment. */
export class RedisDissector implements TcpDissector {
  private readonly conns = new Map<number, Conn>();
  private readonly nextIndex = new Map<number, number>();
  private readonly maxBody: number;
  private readonly parser: RespParser;
  private readonly counters: RedisDissectorStats = { entries: 0, errors: { 'pair-not-found': 0, timeout: 0, dissection: 0 }, pushes: 0, resyncs: 0 };
  /** The connection and stream of the call in progress (the parser's callback needs them). */
  private cur: { conn: Conn; stream: number; dir: TcpDirection } | null = null;

  constructor(
    private readonly emit: (entry: RedisEntry) => void,
    options: RedisDissectorOptions = {},
  ) {
    this.maxBody = options.maxBodySize ?? DEFAULT_MAX_BODY;
    this.parser = new RespParser(options.maxValueBytes ?? DEFAULT_MAX_VALUE, (v, d) => this.message(v, d));
  }

  stats(): RedisDissectorStats {
    return { ...this.counters, errors: { ...this.counters.errors } };
  }

  open(stream: number, info: StreamOpen): void {
    const c = this.conn(stream);
    if (info.clientDir !== undefined) {
      c.dirs[info.clientDir].isClient = true;
      c.dirs[info.clientDir === 0 ? 1 : 0].isClient = false;
    }
  }

  onData(c: TcpChunk): void {
    const conn = this.conn(c.stream);
    const d = conn.dirs[c.dir];
    if (!d.seen) {
      d.seen = true;
      if (c.offset > 0 || c.midStream) d.afterGap = true;
    }
    const time: Time = { sec: c.firstSec, nsec: c.firstNsec };
    if (d.isClient === null) {
      // Roles unknown: hold the bytes until this direction's first bytes tell which side it is.
      const bytes = Buffer.from(c.buf.subarray(c.start, c.start + c.length));
      conn.held.push({ dir: c.dir, bytes, time });
      const probe = conn.probes[c.dir];
      if (probe.length < ROLE_PROBE) conn.probes[c.dir] = Buffer.concat([probe, bytes.subarray(0, ROLE_PROBE - probe.length)]);
      const v = clientVerdict(conn.probes[c.dir]);
      if (v !== 'more' || conn.probes[c.dir].length >= ROLE_PROBE) this.settleRoles(conn, c.stream, c.dir, v === 'yes');
      return;
    }
    this.parse(conn, c.stream, c.dir, c.buf, c.start, c.start + c.length, time);
  }

  onGap(g: TcpGap): void {
    const conn = this.conn(g.stream);
    const d = conn.dirs[g.dir];
    d.seen = true;
    // Nothing more of this direction's first bytes will be judged.
    if (d.isClient === null && conn.probes[g.dir].length > 0) this.settleRoles(conn, g.stream, g.dir, clientVerdict(conn.probes[g.dir]) === 'yes');
    this.lose(conn, g.stream, d);
  }

  onEnd(e: TcpEnd): void {
    const conn = this.conns.get(e.stream);
    if (!conn) return;
    const d = conn.dirs[e.dir];
    if (d.isClient === null && conn.probes[e.dir].length > 0) this.settleRoles(conn, e.stream, e.dir, clientVerdict(conn.probes[e.dir]) === 'yes');
    if (d.msg) this.lose(conn, e.stream, d);
    if (e.closed) {
      this.finish(conn, e.stream);
      this.conns.delete(e.stream);
      if (e.reason === 'fin' || e.reason === 'rst') this.nextIndex.delete(e.stream);
    }
  }

  flush(): void {
    for (const [stream, conn] of this.conns) this.finish(conn, stream);
    this.conns.clear();
  }

  /**
   * The roles are known (`dir` is the client or not, by its first bytes): the bytes held until
   * now are parsed, in the order they arrived.
   */
  private settleRoles(conn: Conn, stream: number, dir: TcpDirection, isClient: boolean): void {
    conn.dirs[dir].isClient = isClient;
    conn.dirs[dir === 0 ? 1 : 0].isClient = !isClient;
    const held = conn.held;
    conn.held = [];
    conn.probes = [EMPTY, EMPTY];
    for (const h of held) this.parse(conn, stream, h.dir, h.bytes, 0, h.bytes.length, h.time);
  }

  /** Runs buf[from, to) of a direction whose role is known through the RESP parser. */
  private parse(conn: Conn, stream: number, dir: TcpDirection, buf: Uint8Array, from: number, to: number, time: Time): void {
    const d = conn.dirs[dir];
    if (d.resync) {
      if (!startsValue(buf, from, to, d.isClient)) return;
      d.resync = false;
    }
    this.cur = { conn, stream, dir };
    const ok = this.parser.parse(
      d,
      buf,
      from,
      to,
      () => {
        d.msg = { value: null, start: time, parts: [], kept: 0, size: 0, cut: false, error: undefined };
      },
      (a, b) => this.raw(conn, d, buf, a, b),
    );
    this.cur = null;
    if (!ok) this.lose(conn, stream, d);
  }

  private conn(stream: number): Conn {
    let c = this.conns.get(stream);
    if (!c) {
      c = { dirs: [newDir(), newDir()], held: [], probes: [EMPTY, EMPTY], exchanges: [], subscriptions: 0, keptBytes: 0, replyOff: false, skipNext: false, monitor: false };
      this.conns.set(stream, c);
    }
    return c;
  }

  private raw(conn: Conn, d: Dir, buf: Uint8Array, a: number, b: number): void {
    const m = d.msg;
    if (!m) return;
    const n = b - a;
    m.size += n;
    const keep = Math.max(0, Math.min(n, this.maxBody - m.kept, MAX_PENDING_BYTES - conn.keptBytes));
    if (keep > 0) {
      m.parts.push(Buffer.from(buf.subarray(a, a + keep)));
      m.kept += keep;
      conn.keptBytes += keep;
    }
    if (keep < n) m.cut = true;
  }

  /** Bytes were lost or could not be parsed: end the message being read and resync at a later chunk. */
  private lose(conn: Conn, stream: number, d: Dir): void {
    const m = d.msg;
    if (m && !(d.isClient && m.size > 0)) conn.keptBytes -= m.kept;
    Object.assign(d, { ...newDir(), isClient: d.isClient, seen: true, resync: true, afterGap: true });
    this.counters.resyncs++;
    if (m && d.isClient && m.size > 0) {
      // A damaged command still gets its reply: it is in the queue, flagged.
      m.error = 'dissection';
      m.cut = true;
      conn.exchanges.push({ request: m, replies: [], expect: 1, done: false, push: null, command: '', args: [], key: undefined, unanswered: false });
    }
    this.drain(conn, stream);
  }

  /** A whole top-level value was read in the current direction. */
  private message(v: RespValue, d: Dir): void {
    const cur = this.cur;
    const m = d.msg;
    d.msg = null;
    if (!cur || !m) return;
    m.value = v;
    const { conn, stream } = cur;
    if (d.isClient) {
      const words = commandWords(v);
      const desc = words ? describeCommand(words) : { command: '', args: [], key: undefined };
      if (!words) m.error = 'dissection';
      let expect = 1;
      const base = desc.command;
      if (['SUBSCRIBE', 'PSUBSCRIBE', 'SSUBSCRIBE'].includes(base)) expect = Math.max(1, words!.length - 1);
      else if (['UNSUBSCRIBE', 'PUNSUBSCRIBE', 'SUNSUBSCRIBE'].includes(base)) expect = words!.length > 1 ? words!.length - 1 : Math.max(1, conn.subscriptions);
      // CLIENT REPLY OFF / SKIP: the server sends no reply (to the command itself either).
      const mode = base === 'CLIENT REPLY' ? (desc.args[0] ?? '').toUpperCase() : '';
      if (conn.replyOff || conn.skipNext || mode === 'OFF' || mode === 'SKIP') expect = mode === 'ON' ? 1 : 0;
      conn.skipNext = mode === 'SKIP';
      if (mode === 'OFF' || mode === 'ON') conn.replyOff = mode === 'OFF';
      conn.exchanges.push({ request: m, replies: [], expect, done: expect === 0, push: null, ...desc, unanswered: false });
      this.drain(conn, stream);
      return;
    }
    const kind = pubsubKind(v);
    const waiting = conn.exchanges.filter((x) => !x.done && !x.unanswered && x.push === null);
    const subscribing = kind !== null && SUBSCRIBE_KINDS.has(kind);
    // RESP2 messages are recognised in subscribed mode, or by their shape when no command waits
    // (the SUBSCRIBE was before the capture).
    const message = kind !== null && MESSAGE_KINDS.has(kind) && (conn.subscriptions > 0 || (waiting.length === 0 && isMessageShape(v, kind)));
    if (kind !== null && (v.type === 'push' || message) && !(subscribing && waiting[0] && waiting[0].command.toLowerCase() === kind)) {
      // Out of band: a published message, an invalidation, or a confirmation nobody asked for.
      if (subscribing) this.noteSubscriptions(conn, v);
      const chan = v.items[kind === 'pmessage' ? 2 : 1];
      conn.exchanges.push({
        request: null,
        replies: [m],
        expect: 0,
        done: true,
        push: kind,
        command: kind,
        args: v.items.slice(1, 1 + MAX_ARGS).map((x) => clip(renderResp(x))),
        key: chan ? clip(respText(chan)) : undefined,
        unanswered: false,
      });
      this.counters.pushes++;
      this.drain(conn, stream);
      return;
    }
    if (subscribing) this.noteSubscriptions(conn, v);
    if (conn.monitor && v.type === 'simple-string' && (waiting.length === 0 || after(waiting[0]!.request!.start, m.start))) {
      conn.exchanges.push({ request: null, replies: [m], expect: 0, done: true, push: 'monitor', command: 'monitor', args: [clip(respText(v))], key: undefined, unanswered: false });
      this.counters.pushes++;
      this.drain(conn, stream);
      return;
    }
    let x = waiting[0];
    if (x?.command === 'MONITOR' && v.type === 'simple-string') conn.monitor = true;
    // RESET leaves subscribed mode (and RESP3) and answers +RESET.
    if (x?.command === 'RESET' && v.type === 'simple-string') {
      conn.subscriptions = 0;
      conn.monitor = false;
      conn.replyOff = false;
    }
    if (d.afterGap && waiting.length > 1) {
      const before = waiting.filter((w) => !after(w.request!.start, m.start));
      x = before[before.length - 1] ?? waiting[0];
      for (const w of waiting) {
        if (w === x) break;
        w.unanswered = true;
      }
    }
    d.afterGap = false;
    if (x && x.request && after(x.request.start, m.start)) x = undefined;
    if (!x) {
      // A reply to a command that was not captured.
      conn.exchanges.push({ request: null, replies: [m], expect: 0, done: true, push: null, command: '', args: [], key: undefined, unanswered: false });
    } else {
      x.replies.push(m);
      if (--x.expect <= 0) x.done = true;
    }
    this.drain(conn, stream);
  }

  private noteSubscriptions(conn: Conn, v: RespValue): void {
    const n = v.items[2];
    if (n && n.type === 'integer') conn.subscriptions = Number(respText(n));
  }

  /** Emits the exchanges at the head of the queue that are complete. */
  private drain(conn: Conn, stream: number): void {
    if (conn.exchanges.length > MAX_PENDING) conn.exchanges[0]!.unanswered = true;
    while (conn.exchanges.length > 0) {
      const x = conn.exchanges[0]!;
      if (!x.done && !x.unanswered) return;
      conn.exchanges.shift();
      for (const m of [x.request, ...x.replies]) if (m) conn.keptBytes -= m.kept;
      this.emitExchange(x, stream);
    }
  }

  private finish(conn: Conn, stream: number): void {
    // The stream is over with the roles still open: judge on what was sent.
    for (const dir of [0, 1] as const) if (conn.held.length > 0 && conn.probes[dir].length > 0) this.settleRoles(conn, stream, dir, clientVerdict(conn.probes[dir]) === 'yes');
    for (const d of conn.dirs) if (d.msg && d.msg.size > 0 && d.isClient) this.lose(conn, stream, d);
    for (const x of conn.exchanges) x.unanswered = true;
    this.drain(conn, stream);
  }

  private emitExchange(x: Exchange, stream: number): void {
    const index = this.nextIndex.get(stream) ?? 0;
    this.nextIndex.set(stream, index + 1);
    const req = x.request;
    const first = x.replies[0];
    const reply = first?.value ?? null;
    const t0 = req?.start ?? first?.start ?? { sec: 0, nsec: 0 };
    let error: EntryError | undefined;
    if (x.push === null && (!req || (!first && !(x.done && x.expect === 0)))) error = 'pair-not-found';
    else if (req?.error ?? x.replies.find((r) => r.error)?.error) error = 'dissection';
    const values = x.replies.map((r) => r.value).filter((r): r is RespValue => r !== null);
    const entry: RedisEntry = {
      protocol: 'redis',
      stream,
      index,
      timestamp: t0.sec * 1e6 + Math.floor(t0.nsec / 1000),
      elapsed_time: req && first ? Math.round(((first.start.sec - req.start.sec) * 1e9 + (first.start.nsec - req.start.nsec)) / 1000) : 0,
      method: x.command,
      path: x.key ?? '',
      url: x.key ?? '',
      status_code: 0,
      request: req ? this.entryMessage([req]) : null,
      response: x.replies.length > 0 ? this.entryMessage(x.replies) : null,
      redis_command: x.command,
      redis_args: x.args,
      redis_response: clip(values.map((r) => renderResp(r)).join('; ')),
      redis_response_type: reply?.type ?? '',
    };
    if (x.key !== undefined) entry.redis_key = x.key;
    const bad = values.find((r) => r.type === 'error' || r.type === 'bulk-error');
    if (bad && x.push === null) entry.failure = clip(respText(bad));
    if (error) {
      entry.error = error;
      this.counters.errors[error]++;
    }
    this.counters.entries++;
    this.emit(entry);
  }

  private entryMessage(ms: Msg[]): EntryMessage {
    const parts = ms.flatMap((m) => m.parts);
    const size = ms.reduce((s, m) => s + m.size, 0);
    let body: Buffer | null = parts.length > 0 ? Buffer.concat(parts) : null;
    let truncated = ms.some((m) => m.cut);
    if (body && body.length > this.maxBody) {
      body = body.subarray(0, this.maxBody);
      truncated = true;
    }
    return { headers: [], body, body_size: size, truncated };
  }
}

/** a is strictly later than b. */
function after(a: Time, b: Time): boolean {
  return a.sec > b.sec || (a.sec === b.sec && a.nsec > b.nsec);
}

/** A chunk a direction may resume at after a hole: its first line is a RESP type line (clients: a command). */
function startsValue(buf: Uint8Array, from: number, to: number, client: boolean | null): boolean {
  const b = buf.subarray(from, Math.min(to, from + 64));
  const v = client ? clientVerdict(b) : serverVerdict(b);
  return v === 'yes';
}

const HTTP_LINE = / HTTP\/\d/;

/** The first bytes of a client: `*<n>\r\n$<len>\r\n`, or an inline line starting with a known command. */
function clientVerdict(b: Uint8Array): Verdict {
  if (b.length === 0) return 'more';
  if (b[0] === 0x2a) {
    const m = /^\*(\d{0,7})(\r?)(\n?)(\$?)(\d{0,10})(\r?)(\n?)/.exec(Buffer.from(b.subarray(0, 40)).toString('latin1'));
    if (!m) return 'no';
    const whole = m[0].length;
    if (whole === b.length || whole === 40) return b.length < 40 ? 'more' : 'no';
    return m[1] !== '' && m[1] !== '0' && m[3] === '\n' && m[4] === '$' && m[5] !== '' && m[7] === '\n' ? 'yes' : 'no';
  }
  const text = Buffer.from(b.subarray(0, 256)).toString('latin1');
  const word = /^[A-Za-z]{0,12}/.exec(text)![0];
  if (word.length === text.length) return word.length < 12 && [...INLINE_COMMANDS].some((c) => c.startsWith(word.toUpperCase())) ? 'more' : 'no';
  if (!INLINE_COMMANDS.has(word.toUpperCase())) return 'no';
  const nl = text.indexOf('\n');
  if (nl < 0) return text.length < 256 && /^[\x20-\x7e\t]*$/.test(text) ? 'more' : 'no';
  const line = text.slice(0, nl).replace(/\r$/, '');
  // HTTP request lines, HTTP/0.9's `GET /path` included, are not inline commands.
  if (!/^[\x20-\x7e\t]*$/.test(line) || HTTP_LINE.test(line) || /^GET +(\/|[a-z]+:\/\/)/i.test(line)) return 'no';
  const next = text[word.length];
  return next === ' ' || next === '\r' || next === '\n' ? 'yes' : 'no';
}

/** The first bytes of a server: one well-formed RESP type line. */
function serverVerdict(b: Uint8Array): Verdict {
  if (b.length === 0) return 'more';
  const marker = String.fromCharCode(b[0]!);
  if (!TYPE_OF[marker]) return 'no';
  const text = Buffer.from(b.subarray(0, 128)).toString('latin1');
  const nl = text.indexOf('\n');
  const line = nl < 0 ? text.slice(1) : text.slice(1, nl).replace(/\r$/, '');
  const ok = (s: string): boolean => {
    switch (marker) {
      case '+':
      case '-':
        return /^[\x20-\x7e\t]+$/.test(s) && (marker === '+' || /^[A-Z]/.test(s));
      case ':':
      case '(':
        return /^-?\d+$/.test(s);
      case '#':
        return s === 't' || s === 'f';
      case '_':
        return s === '';
      case ',':
        return /^[-+.\deE]+$|^-?inf$|^nan$/i.test(s);
      default:
        return /^(-1|\d{1,10}|\?)$/.test(s);
    }
  };
  if (nl < 0) {
    if (text.length >= 128) return 'no';
    if (line === '') return 'more';
    // A prefix of a valid line: all of it must fit the line's alphabet.
    const prefixOk =
      marker === '+' || marker === '-' ? /^[\x20-\x7e\t]*\r?$/.test(line) : marker === '#' ? /^[tf]?\r?$/.test(line) : marker === ',' ? /^[-+.\deEinfa]*\r?$/i.test(line) : /^-?[\d?]*\r?$/.test(line);
    return prefixOk ? 'more' : 'no';
  }
  if (!text.slice(0, nl).endsWith('\r')) return 'no';
  return ok(line) ? 'yes' : 'no';
}

/** Redis: port 6379; a client's first value is a command, a server's first line a RESP value. */
export const REDIS_PROTOCOL: TcpProtocol = {
  name: 'redis',
  ports: [6379],
  detect(bytes: Uint8Array, fromClient: boolean | undefined): Verdict {
    if (fromClient === true) return clientVerdict(bytes);
    if (fromClient === false) return serverVerdict(bytes);
    const c = clientVerdict(bytes);
    if (c === 'yes') return 'yes';
    const s = serverVerdict(bytes);
    return s === 'yes' ? 'yes' : c === 'more' || s === 'more' ? 'more' : 'no';
  },
};
