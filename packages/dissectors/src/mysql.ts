import type { TcpChunk, TcpDirection, TcpEnd, TcpGap } from '@kubeshark-mcp/capture';
import type { Entry, EntryError, EntryMessage } from './entry';
import type { StreamOpen, TcpDissector, TcpProtocol, Verdict } from './stream';

/**
 * MySQL client/server protocol dissector (protocol 10, the one every MySQL and MariaDB server
 * since 4.1 speaks). One `MysqlEntry` per command, plus one for the login. Pure: no I/O.
 *
 * - Packets: 3-byte little-endian payload length, 1-byte sequence id, payload. The sequence id
 *   restarts at 0 with every command. Payloads longer than `maxBodySize` are kept up to the
 *   bound and the rest is skipped as it arrives: nothing is allocated from a length claim.
 * - Connection phase: the server's initial handshake (v10: version, connection id, capability
 *   flags), the client's HandshakeResponse41 (user, database), optional auth switch and
 *   more-data rounds, then OK or ERR: that is the `LOGIN` entry. A client SSLRequest ends
 *   dissection of the stream (TLS follows): the entry says so (`mysql_tls`).
 * - Command phase: COM_QUERY, COM_STMT_PREPARE (the OK gives the statement id, remembered with
 *   its SQL for COM_STMT_EXECUTE), COM_STMT_EXECUTE, COM_INIT_DB, COM_PING, COM_FIELD_LIST and
 *   the rest; responses are OK (affected rows, last insert id), ERR (code, SQLSTATE, message),
 *   EOF, or a result set (column count, column definitions, rows until EOF, or until an OK with
 *   the 0xFE header under CLIENT_DEPRECATE_EOF), following SERVER_MORE_RESULTS_EXISTS. Rows are
 *   counted, and kept only as far as the body bound. COM_QUIT, COM_STMT_CLOSE and
 *   COM_STMT_SEND_LONG_DATA have no response and come out at once.
 * - Roles: the client direction from the handshake, else by content (the server greeting, or a
 *   packet with sequence id 0 that is a command).
 * - Gaps: framing is lost. The current command is flagged `dissection`; the client direction
 *   resumes at the first chunk that starts with a plausible command packet, the server at the
 *   first chunk after that which starts with a response packet (sequence id 1).
 */

/** A MySQL command (or the login) in the shared vocabulary, plus MySQL's details. */
export interface MysqlEntry extends Entry {
  protocol: 'mysql';
  /** `COM_QUERY`, `COM_STMT_EXECUTE`, ..., or `LOGIN` for the connection phase. */
  mysql_command: string;
  /** SQL text: the query, the prepared statement (for EXECUTE, looked up by statement id), the database of COM_INIT_DB, the table of COM_FIELD_LIST; '' otherwise. */
  mysql_query: string;
  /** Statement id of COM_STMT_PREPARE's OK, or of EXECUTE/CLOSE/RESET/FETCH; -1 when none. */
  mysql_statement_id: number;
  /** `OK`, `ERR`, `EOF`, `RESULTSET`, `DATA` (another reply, e.g. COM_STATISTICS), or '' without a response. */
  mysql_response: string;
  /** ERR packet's error code, 0 otherwise. */
  mysql_error_code: number;
  /** ERR packet's SQLSTATE (5 characters), '' when absent. */
  mysql_sql_state: string;
  mysql_error_message: string;
  /** OK packet's affected rows, 0 otherwise. */
  mysql_affected_rows: number;
  /** OK packet's last insert id, 0 otherwise. */
  mysql_last_insert_id: number;
  /** Rows of the result set(s) (rows seen, even past the body bound), 0 without one. */
  mysql_rows: number;
  /** Columns of the (first) result set, 0 without one. */
  mysql_columns: number;
  /** Current database when the command was sent ('' when unknown). */
  mysql_database: string;
  /** User of the login ('' when the login was not captured). */
  mysql_user: string;
  /** Server version and connection id from the greeting ('' and -1 when not captured). */
  mysql_server_version: string;
  mysql_connection_id: number;
  /** The client asked for TLS (SSLRequest): nothing after the login is visible. */
  mysql_tls: boolean;
}

export interface MysqlDissectorOptions {
  /** Payload bytes kept per message (request: the command packet; response: its packets). Default 64 KiB. */
  maxBodySize?: number;
}

export interface MysqlDissectorStats {
  entries: number;
  errors: Record<EntryError, number>;
  /** Times a direction lost framing (gap) and resumed, and server bytes no command explains. */
  resyncs: number;
  unexplainedBytes: number;
  tlsStreams: number;
  /** Streams that switched to the compressed protocol after the login (not dissected further). */
  compressedStreams: number;
  /** Bytes held at the time of the call: pending input and the bodies of unfinished commands. */
  bufferedBytes: number;
}

const DEFAULT_MAX_BODY = 64 * 1024;
/** Commands awaiting their response per connection, and the bytes they may hold. */
const MAX_PENDING_CALLS = 64;
const MAX_HELD_BYTES = 4 * 1024 * 1024;
const MAX_PACKET = 0xffffff;

/** Command codes (MySQL `enum_server_command`). */
export const MYSQL_COMMANDS: Readonly<Record<number, string>> = {
  0x00: 'COM_SLEEP',
  0x01: 'COM_QUIT',
  0x02: 'COM_INIT_DB',
  0x03: 'COM_QUERY',
  0x04: 'COM_FIELD_LIST',
  0x05: 'COM_CREATE_DB',
  0x06: 'COM_DROP_DB',
  0x07: 'COM_REFRESH',
  0x08: 'COM_SHUTDOWN',
  0x09: 'COM_STATISTICS',
  0x0a: 'COM_PROCESS_INFO',
  0x0b: 'COM_CONNECT',
  0x0c: 'COM_PROCESS_KILL',
  0x0d: 'COM_DEBUG',
  0x0e: 'COM_PING',
  0x0f: 'COM_TIME',
  0x10: 'COM_DELAYED_INSERT',
  0x11: 'COM_CHANGE_USER',
  0x12: 'COM_BINLOG_DUMP',
  0x13: 'COM_TABLE_DUMP',
  0x14: 'COM_CONNECT_OUT',
  0x15: 'COM_REGISTER_SLAVE',
  0x16: 'COM_STMT_PREPARE',
  0x17: 'COM_STMT_EXECUTE',
  0x18: 'COM_STMT_SEND_LONG_DATA',
  0x19: 'COM_STMT_CLOSE',
  0x1a: 'COM_STMT_RESET',
  0x1b: 'COM_SET_OPTION',
  0x1c: 'COM_STMT_FETCH',
  0x1d: 'COM_DAEMON',
  0x1e: 'COM_BINLOG_DUMP_GTID',
  0x1f: 'COM_RESET_CONNECTION',
};

const COM_QUIT = 0x01;
const COM_INIT_DB = 0x02;
const COM_QUERY = 0x03;
const COM_FIELD_LIST = 0x04;
const COM_STATISTICS = 0x09;
const COM_STMT_PREPARE = 0x16;
const COM_STMT_EXECUTE = 0x17;
const COM_STMT_SEND_LONG_DATA = 0x18;
const COM_STMT_CLOSE = 0x19;
const COM_STMT_RESET = 0x1a;
const COM_STMT_FETCH = 0x1c;
const COM_CHANGE_USER = 0x11;

const CLIENT_CONNECT_WITH_DB = 0x8;
const CLIENT_PROTOCOL_41 = 0x200;
const CLIENT_SSL = 0x800;
const CLIENT_SECURE_CONNECTION = 0x8000;
const CLIENT_PLUGIN_AUTH_LENENC = 0x200000;
const CLIENT_DEPRECATE_EOF = 0x1000000;
const CLIENT_COMPRESS = 0x20;
const CLIENT_ZSTD_COMPRESSION = 0x4000000;
const CLIENT_QUERY_ATTRIBUTES = 0x8000000;
const SERVER_MORE_RESULTS_EXISTS = 0x8;

/** Bytes of a server greeting: protocol 10, a printable NUL-terminated version, then the fixed part. */
function greetingVerdict(p: Uint8Array, from: number, avail: number): Verdict {
  if (avail < 1) return 'more';
  if (p[from] !== 0x0a) return 'no';
  for (let i = 1; i < Math.min(avail, 80); i++) {
    const b = p[from + i]!;
    if (b === 0) return i > 1 && avail >= i + 1 + 4 + 8 + 1 + 2 ? 'yes' : i > 1 ? 'more' : 'no';
    if (b < 0x20 || b > 0x7e) return 'no';
  }
  return avail >= 80 ? 'no' : 'more';
}

/** A client command packet header at buf[at]: sequence 0, a known command, a plausible length. */
function looksLikeCommand(buf: Uint8Array, at: number, avail: number): boolean {
  if (avail < 5) return false;
  const len = buf[at]! | (buf[at + 1]! << 8) | (buf[at + 2]! << 16);
  const cmd = buf[at + 4]!;
  if (buf[at + 3] !== 0 || len < 1 || MYSQL_COMMANDS[cmd] === undefined || cmd === 0) return false;
  if (cmd === COM_QUERY || cmd === COM_STMT_PREPARE) {
    // SQL text: printable (or UTF-8) in what we can see, after an empty query-attributes block
    // (00 01: no parameters, one set) that MySQL 8.0.23+ clients send.
    const from = cmd === COM_QUERY && buf[at + 5] === 0 && buf[at + 6] === 1 ? 7 : 5;
    for (let i = from; i < Math.min(at + 4 + len, at + avail, at + 64) - at; i++) {
      const b = buf[at + i]!;
      if (b < 0x09 || (b > 0x0d && b < 0x20) || b === 0x7f) return false;
    }
    return len >= from - 3;
  }
  return len <= 1024 * 1024;
}

/**
 * MySQL by content: the server's greeting (sequence 0, protocol 10, printable NUL-terminated
 * version), or, for a stream joined after the login, a client COM_QUERY/COM_STMT_PREPARE packet
 * (sequence 0) whose text is printable and whose length fits what was sent.
 */
export const MYSQL_PROTOCOL: TcpProtocol = {
  name: 'mysql',
  ports: [3306],
  detect(bytes: Uint8Array, fromClient: boolean | undefined): Verdict {
    if (bytes.length < 5) return bytes.length > 0 && bytes.length >= 4 && bytes[3] !== 0 ? 'no' : 'more';
    const len = bytes[0]! | (bytes[1]! << 8) | (bytes[2]! << 16);
    if (bytes[3] !== 0 || len < 1) return 'no';
    if (fromClient !== true && bytes[4] === 0xff) return refusalVerdict(bytes, len);
    if (fromClient !== true) {
      if (len < 20 || len > 1024) return fromClient === false ? 'no' : clientVerdict(bytes, len);
      const v = greetingVerdict(bytes, 4, bytes.length - 4);
      if (v !== 'no' || fromClient === false) return v;
    }
    return clientVerdict(bytes, len);
  },
};

/**
 * A server that refuses the connection sends an ERR instead of the greeting (sequence 0: error
 * code, then the message, no SQLSTATE): `Host '10.0.0.7' is not allowed to connect`. Claimed
 * when the whole packet came alone and its message is printable text.
 */
function refusalVerdict(bytes: Uint8Array, len: number): Verdict {
  if (len < 8 || len > 512) return 'no';
  if (bytes.length < len + 4) return 'more';
  if (bytes.length !== len + 4) return 'no';
  const code = bytes[5]! | (bytes[6]! << 8);
  if (code < 1000 || code > 5000) return 'no';
  for (let i = 7; i < bytes.length; i++) if (bytes[i]! < 0x20 || bytes[i]! > 0x7e) return 'no';
  return 'yes';
}

function clientVerdict(bytes: Uint8Array, len: number): Verdict {
  const cmd = bytes[4];
  if (cmd !== COM_QUERY && cmd !== COM_STMT_PREPARE) return 'no';
  // The whole packet must be in the first bytes (a query longer than that is not worth judging on).
  if (len > 4096 || bytes.length !== len + 4) return bytes.length < len + 4 ? 'more' : 'no';
  return looksLikeCommand(bytes, 0, bytes.length) ? 'yes' : 'no';
}

interface Time {
  sec: number;
  nsec: number;
}

/** One packet as parsed: its sequence id, the kept payload bytes and the full payload length. */
interface Packet {
  seq: number;
  payload: Buffer;
  length: number;
  start: Time;
}

type Phase = 'greeting' | 'login' | 'auth' | 'command' | 'tls' | 'dead';

/** Parse state of one command's response. */
type ResponseState =
  | 'first'
  | 'columns' // column definitions of a result set
  | 'columns-eof'
  | 'rows'
  | 'prepare-params'
  | 'prepare-params-eof'
  | 'prepare-columns'
  | 'prepare-columns-eof'
  | 'field-list'
  | 'local-infile'; // the client sends data (a LOCAL INFILE upload, auth rounds), until the server's OK or ERR

interface Call {
  command: string;
  code: number;
  query: string;
  stmtId: number;
  database: string;
  start: Time;
  request: EntryMessage | null;
  index: number;
  // response
  responseKind: string;
  responseStart: Time | null;
  parts: Buffer[];
  kept: number;
  size: number;
  cut: boolean;
  state: ResponseState;
  remaining: number;
  columns: number;
  rows: number;
  errorCode: number;
  sqlState: string;
  errorMessage: string;
  affected: number;
  insertId: number;
  error: EntryError | undefined;
  /** For COM_STMT_PREPARE: parameters and columns still to come. */
  params: number;
  /** For COM_CHANGE_USER: the user and database the session takes on success. */
  changeUser?: { user: string; database: string };
}

interface Dir {
  pending: Buffer;
  /** Stream offset of pending[0]. */
  offset: number;
  /** [offset, sec, nsec] of the chunks over `pending`. */
  marks: number[][];
  /** Skipping the rest of an oversized payload. */
  skip: number;
  /** Framing lost: waiting for a chunk that starts a packet. */
  lost: boolean;
  /** Partial oversized packet being assembled (kept prefix). */
  big: Packet | null;
  /** A chunk of this direction was seen (the first one tells a mid-stream join). */
  seen: boolean;
}

interface Conn {
  clientDir: TcpDirection | undefined;
  dirs: [Dir, Dir];
  phase: Phase;
  caps: number;
  version: string;
  connectionId: number;
  user: string;
  database: string;
  tls: boolean;
  login: Call | null;
  calls: Call[];
  statements: Map<number, string>;
  nextIndex: number;
}

const newDir = (): Dir => ({ pending: Buffer.alloc(0), offset: 0, marks: [], skip: 0, lost: false, big: null, seen: false });

const callBytes = (c: Call): number => c.kept + (c.request?.body?.length ?? 0);
const held = (conn: Conn): number => conn.calls.reduce((n, c) => n + callBytes(c), 0);

/** Reads a length-encoded integer at p[at]; [value, bytes] or null when truncated or invalid. */
function lenenc(p: Uint8Array, at: number): [number, number] | null {
  const b = p[at];
  if (b === undefined) return null;
  if (b < 0xfb) return [b, 1];
  if (b === 0xfc) return at + 3 <= p.length ? [p[at + 1]! | (p[at + 2]! << 8), 3] : null;
  if (b === 0xfd) return at + 4 <= p.length ? [p[at + 1]! | (p[at + 2]! << 8) | (p[at + 3]! << 16), 4] : null;
  if (b === 0xfe) {
    if (at + 9 > p.length) return null;
    const lo = (p[at + 1]! | (p[at + 2]! << 8) | (p[at + 3]! << 16) | (p[at + 4]! << 24)) >>> 0;
    const hi = (p[at + 5]! | (p[at + 6]! << 8) | (p[at + 7]! << 16) | (p[at + 8]! << 24)) >>> 0;
    return [hi * 2 ** 32 + lo, 9];
  }
  return null;
}

function cstring(p: Buffer, at: number, max = 256): [string, number] | null {
  const end = p.indexOf(0, at);
  if (end < 0 || end - at > max) return null;
  return [p.toString('utf8', at, end), end + 1];
}

const u16 = (p: Uint8Array, at: number): number => p[at]! | (p[at + 1]! << 8);
const u32 = (p: Uint8Array, at: number): number => (p[at]! | (p[at + 1]! << 8) | (p[at + 2]! << 16) | (p[at + 3]! << 24)) >>> 0;

/** Binary protocol value sizes by column type; -1: one length byte first (temporal types); absent: length-encoded string. */
const VALUE_SIZE: Readonly<Record<number, number>> = { 1: 1, 2: 2, 3: 4, 4: 4, 5: 8, 6: 0, 7: -1, 8: 8, 9: 4, 10: -1, 11: -1, 12: -1, 13: 2 };

/**
 * Where the SQL of a COM_QUERY starts. With CLIENT_QUERY_ATTRIBUTES (MySQL 8.0.23+) a block of
 * named parameters comes first: count, set count, null bitmap, types and names, binary values.
 * Joined after the login (capabilities unknown), the common empty block `00 01` is recognised.
 * -1 when the block cannot be read.
 */
function sqlStart(b: Buffer, conn: Conn): number {
  const attrs = conn.version !== '' || conn.user !== '' ? (conn.caps & CLIENT_QUERY_ATTRIBUTES) !== 0 : b[1] === 0 && b[2] === 1;
  if (!attrs) return 1;
  const n = lenenc(b, 1);
  if (!n) return -1;
  let at = 1 + n[1];
  const sets = lenenc(b, at);
  if (!sets) return -1;
  at += sets[1];
  const count = n[0];
  if (count === 0) return at;
  if (count > 1024) return -1;
  const bitmap = at;
  at += Math.floor((count + 7) / 8);
  if (b[at++] !== 1) return -1; // types not sent: the values cannot be sized
  const types: number[] = [];
  for (let i = 0; i < count; i++) {
    if (at + 2 > b.length) return -1;
    types.push(b[at]!);
    at += 2;
    const name = lenenc(b, at);
    if (!name) return -1;
    at += name[1] + name[0];
  }
  for (let i = 0; i < count; i++) {
    if ((b[bitmap + (i >> 3)]! >> (i & 7)) & 1) continue; // NULL: no value
    const size = VALUE_SIZE[types[i]!];
    if (size === undefined) {
      const l = lenenc(b, at);
      if (!l) return -1;
      at += l[1] + l[0];
    } else if (size < 0) at += 1 + (b[at] ?? 0);
    else at += size;
    if (at > b.length) return -1;
  }
  return at;
}

/** First SQL keyword, upper-cased (comments and parentheses skipped). */
export function sqlKeyword(sql: string): string {
  const s = sql.replace(/^(\s|\(|\/\*[\s\S]*?\*\/|--[^\n]*\n|#[^\n]*\n)*/, '');
  const m = /^[A-Za-z_]+/.exec(s);
  return m ? m[0].toUpperCase() : '';
}

/** MySQL over reassembled TCP streams; see the module comment. */
export class MysqlDissector implements TcpDissector {
  private readonly conns = new Map<number, Conn>();
  private readonly maxBody: number;
  private readonly counters: MysqlDissectorStats = {
    entries: 0,
    errors: { 'pair-not-found': 0, timeout: 0, dissection: 0 },
    resyncs: 0,
    unexplainedBytes: 0,
    tlsStreams: 0,
    compressedStreams: 0,
    bufferedBytes: 0,
  };

  constructor(
    private readonly emit: (entry: MysqlEntry) => void,
    options: MysqlDissectorOptions = {},
  ) {
    this.maxBody = options.maxBodySize ?? DEFAULT_MAX_BODY;
  }

  open(stream: number, info: StreamOpen): void {
    this.conns.set(stream, this.newConn(info.clientDir, info.upgrade?.firstIndex ?? 0));
  }

  /** Nothing is pending outside streams: every call comes out when its stream ends. */
  flush(): void {}

  /** Counters, and the bytes held right now over all streams (pending input, kept bodies). */
  stats(): MysqlDissectorStats {
    let buffered = 0;
    for (const c of this.conns.values()) {
      buffered += held(c) + (c.login ? callBytes(c.login) : 0);
      for (const d of c.dirs) buffered += d.pending.length + (d.big?.payload.length ?? 0);
    }
    return { ...this.counters, errors: { ...this.counters.errors }, bufferedBytes: buffered };
  }

  private newConn(clientDir: TcpDirection | undefined, firstIndex: number): Conn {
    return {
      clientDir,
      dirs: [newDir(), newDir()],
      phase: 'greeting',
      caps: 0,
      version: '',
      connectionId: -1,
      user: '',
      database: '',
      tls: false,
      login: null,
      calls: [],
      statements: new Map(),
      nextIndex: firstIndex,
    };
  }

  private conn(stream: number): Conn {
    let c = this.conns.get(stream);
    if (!c) {
      c = this.newConn(undefined, 0);
      this.conns.set(stream, c);
    }
    return c;
  }

  onData(chunk: TcpChunk): void {
    const conn = this.conn(chunk.stream);
    if (conn.phase === 'tls' || conn.phase === 'dead') return;
    const d = conn.dirs[chunk.dir];
    const bytes = chunk.buf.subarray(chunk.start, chunk.start + chunk.length);
    if (!d.seen) {
      d.seen = true;
      // Joined mid-stream: the first byte need not start a message; wait for a chunk that does.
      if (chunk.midStream) d.lost = true;
    }
    if (d.pending.length === 0) d.offset = chunk.offset;
    if (conn.clientDir === undefined) this.guessRoles(conn, chunk.dir, bytes, chunk.offset);
    if (d.lost) {
      // Resume only at a chunk that starts a packet of the kind this direction sends next.
      const isClient = chunk.dir === conn.clientDir;
      const ok = isClient ? looksLikeCommand(bytes, 0, bytes.length) : bytes.length >= 4 && bytes[3] === 1 && this.clientResumed(conn);
      if (!ok) {
        this.counters.unexplainedBytes += bytes.length;
        return;
      }
      d.lost = false;
      d.pending = Buffer.alloc(0);
      d.marks = [];
      d.offset = chunk.offset;
      d.skip = 0;
      d.big = null;
      this.counters.resyncs++;
      // Commands sent before the client's hole may still be answered, but the server resumes
      // only at a response to a command after it: the earlier ones will not get theirs.
      if (isClient) for (const c of conn.calls.splice(0)) this.emitCall(conn, chunk.stream, c);
    }
    d.marks.push([chunk.offset, chunk.firstSec, chunk.firstNsec]);
    // Copy: the chunk's buffer is only valid during the call.
    d.pending = d.pending.length === 0 ? Buffer.from(bytes) : Buffer.concat([d.pending, bytes]);
    this.run(conn, chunk.stream, chunk.dir);
  }

  onGap(gap: TcpGap): void {
    const conn = this.conn(gap.stream);
    if (conn.phase === 'tls' || conn.phase === 'dead') return;
    const d = conn.dirs[gap.dir];
    d.lost = true;
    d.pending = Buffer.alloc(0);
    d.marks = [];
    d.skip = 0;
    d.big = null;
    const isClient = gap.dir === conn.clientDir;
    if (conn.phase !== 'command') {
      if (conn.login) conn.login.error = 'dissection';
      conn.phase = 'command';
    }
    // The call being answered (or the next one, when the client lost bytes) is damaged; the
    // server's framing depends on the client's commands, so it resumes after the client does.
    const head = conn.calls[0];
    if (head) head.error = 'dissection';
    if (isClient) {
      const s = conn.dirs[conn.clientDir === 0 ? 1 : 0];
      s.lost = true;
      s.pending = Buffer.alloc(0);
      s.marks = [];
      for (const c of conn.calls) c.error = 'dissection';
    } else if (head) {
      // Whatever remains of this response is unparseable: finish it as damaged.
      this.finishCall(conn, gap.stream);
    }
  }

  onEnd(end: TcpEnd): void {
    const conn = this.conns.get(end.stream);
    if (!conn) return;
    if (!end.closed) return;
    if (conn.login) this.emitCall(conn, end.stream, conn.login);
    conn.login = null;
    for (const c of conn.calls.splice(0)) this.emitCall(conn, end.stream, c);
    this.conns.delete(end.stream);
  }

  /** Server resumes only once the client resumed with a command the server is answering. */
  private clientResumed(conn: Conn): boolean {
    if (conn.clientDir === undefined) return false;
    const c = conn.dirs[conn.clientDir];
    return !c.lost && conn.calls.length > 0 && conn.calls[0]!.state === 'first' && conn.calls[0]!.responseStart === null;
  }

  private guessRoles(conn: Conn, dir: TcpDirection, bytes: Uint8Array, offset: number): void {
    if (bytes.length < 5) return;
    const len = bytes[0]! | (bytes[1]! << 8) | (bytes[2]! << 16);
    if (bytes[3] === 0 && len >= 20 && greetingVerdict(bytes, 4, bytes.length - 4) === 'yes') {
      conn.clientDir = dir === 0 ? 1 : 0;
    } else if (bytes[3] === 0 && looksLikeCommand(bytes, 0, bytes.length)) {
      conn.clientDir = dir;
      if (conn.phase === 'greeting') conn.phase = 'command';
    } else return;
    if (offset > 0 && conn.phase === 'greeting') conn.phase = 'command';
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
    if (d.pending.length === 0) d.pending = Buffer.alloc(0);
  }

  /** Cuts complete packets out of a direction's bytes (oversized payloads kept in part). */
  private run(conn: Conn, stream: number, dir: TcpDirection): void {
    const d = conn.dirs[dir];
    for (;;) {
      if (conn.phase === 'tls' || conn.phase === 'dead' || d.lost) return;
      if (d.skip > 0) {
        const n = Math.min(d.skip, d.pending.length);
        this.consume(d, n);
        d.skip -= n;
        if (d.skip > 0) return;
        const big = d.big!;
        d.big = null;
        this.packet(conn, stream, dir, big);
        continue;
      }
      if (d.pending.length < 4) return;
      const len = d.pending[0]! | (d.pending[1]! << 8) | (d.pending[2]! << 16);
      const seq = d.pending[3]!;
      const start = this.timeAt(d, d.offset);
      if (len <= this.maxBody || len <= 64) {
        if (d.pending.length < 4 + len) return;
        const payload = Buffer.from(d.pending.subarray(4, 4 + len));
        this.consume(d, 4 + len);
        this.packet(conn, stream, dir, { seq, payload, length: len, start });
        continue;
      }
      // Oversized: keep the bound, skip the rest as it comes.
      const keep = Math.max(this.maxBody, 64);
      if (d.pending.length < 4 + keep) return;
      d.big = { seq, payload: Buffer.from(d.pending.subarray(4, 4 + keep)), length: len, start };
      this.consume(d, 4 + keep);
      d.skip = len - keep;
    }
  }

  private packet(conn: Conn, stream: number, dir: TcpDirection, p: Packet): void {
    if (conn.clientDir === undefined) {
      // Roles still unknown (no handshake, nothing recognisable yet): a response packet
      // (sequence id > 0) says this is the server.
      if (p.seq === 0) return;
      conn.clientDir = dir === 0 ? 1 : 0;
      if (conn.phase === 'greeting') conn.phase = 'command';
    }
    if (p.length === MAX_PACKET) {
      // A payload continued in the next packet (16 MiB+): only counted.
      const c = conn.calls[0];
      if (c) this.addResponse(c, p);
      return;
    }
    const fromClient = dir === conn.clientDir;
    switch (conn.phase) {
      case 'greeting':
        if (!fromClient) this.greeting(conn, stream, p);
        else if (p.seq !== 0) this.loginRequest(conn, stream, p); // greeting not captured
        else {
          // Joined after the login: commands restart the sequence at 0.
          conn.phase = 'command';
          this.command(conn, stream, p);
        }
        return;
      case 'login':
        if (fromClient) this.loginRequest(conn, stream, p);
        else this.counters.unexplainedBytes += p.length;
        return;
      case 'auth':
        if (!fromClient) this.authReply(conn, stream, p);
        return; // client auth-switch responses and more auth data
      case 'command':
        if (fromClient) this.command(conn, stream, p);
        else this.response(conn, stream, p);
        return;
      case 'tls':
      case 'dead':
        return;
      default: {
        const never: never = conn.phase;
        throw new Error(`unknown phase ${String(never)}`);
      }
    }
  }

  private greeting(conn: Conn, stream: number, p: Packet): void {
    const b = p.payload;
    if (b[0] === 0xff) {
      // The server refused the connection before the handshake (too many connections, host blocked).
      const call = this.newCall(conn, 'LOGIN', -1, '', p.start, null);
      conn.login = call;
      conn.phase = 'auth';
      this.authReply(conn, stream, p);
      return;
    }
    const v = cstring(b, 1, 80);
    if (b[0] !== 0x0a || !v) {
      conn.phase = 'command';
      return;
    }
    conn.version = v[0];
    let at = v[1];
    if (at + 4 <= b.length) conn.connectionId = u32(b, at);
    at += 4 + 8 + 1;
    let caps = at + 2 <= b.length ? u16(b, at) : 0;
    at += 2 + 1 + 2;
    if (at + 2 <= b.length) caps |= u16(b, at) << 16;
    conn.caps = caps >>> 0;
    conn.phase = 'login';
  }

  private loginRequest(conn: Conn, stream: number, p: Packet): void {
    const b = p.payload;
    const caps = b.length >= 4 ? u32(b, 0) : 0;
    const call = this.newCall(conn, 'LOGIN', -1, '', p.start, this.message(p));
    conn.login = call;
    if (!(caps & CLIENT_PROTOCOL_41)) {
      // Pre-4.1 HandshakeResponse320: u16 caps, u24 max packet, user.
      const u = cstring(b, 5);
      if (u) conn.user = u[0];
      conn.phase = 'auth';
      return;
    }
    // Server capabilities apply only as far as the client also set them.
    conn.caps = conn.version === '' ? caps : (conn.caps & caps) >>> 0;
    if ((caps & CLIENT_SSL) !== 0 && b.length <= 32) {
      // SSLRequest: the rest of the connection is TLS.
      conn.tls = true;
      conn.phase = 'tls';
      this.counters.tlsStreams++;
      conn.login = null;
      call.responseKind = '';
      this.emitCall(conn, stream, call);
      return;
    }
    let at = 32;
    const u = cstring(b, at);
    if (u) {
      conn.user = u[0];
      at = u[1];
      if (caps & CLIENT_PLUGIN_AUTH_LENENC) {
        const l = lenenc(b, at);
        at = l ? at + l[1] + l[0] : b.length;
      } else if (caps & CLIENT_SECURE_CONNECTION) {
        at += 1 + (b[at] ?? 0);
      } else {
        const s = cstring(b, at, 1024);
        at = s ? s[1] : b.length;
      }
      if (caps & CLIENT_CONNECT_WITH_DB && at < b.length) {
        const db = cstring(b, at);
        if (db) conn.database = db[0];
      }
    }
    call.database = conn.database;
    conn.phase = 'auth';
  }

  private authReply(conn: Conn, stream: number, p: Packet): void {
    const call = conn.login;
    const b = p.payload;
    if (b[0] === 0x00 || b[0] === 0xff) {
      if (call) {
        call.responseStart ??= p.start;
        this.addResponse(call, p);
        this.okOrErr(conn, call, b);
        conn.login = null;
        this.emitCall(conn, stream, call);
      }
      conn.phase = b[0] === 0xff ? 'dead' : 'command';
      if (b[0] === 0x00 && (conn.caps & (CLIENT_COMPRESS | CLIENT_ZSTD_COMPRESSION)) !== 0) {
        // The compressed protocol wraps every later packet: not dissected.
        conn.phase = 'dead';
        this.counters.compressedStreams++;
      }
      return;
    }
    // 0xFE auth switch, 0x01 more auth data: another round follows.
    if (call) {
      call.responseStart ??= p.start;
      this.addResponse(call, p);
    }
  }

  private newCall(conn: Conn, command: string, code: number, query: string, start: Time, request: EntryMessage | null): Call {
    return {
      command,
      code,
      query,
      stmtId: -1,
      database: conn.database,
      start,
      request,
      index: conn.nextIndex++,
      responseKind: '',
      responseStart: null,
      parts: [],
      kept: 0,
      size: 0,
      cut: false,
      state: 'first',
      remaining: 0,
      columns: 0,
      rows: 0,
      errorCode: 0,
      sqlState: '',
      errorMessage: '',
      affected: 0,
      insertId: 0,
      error: undefined,
      params: 0,
    };
  }

  private message(p: Packet): EntryMessage {
    const keep = Math.min(p.payload.length, this.maxBody);
    return { headers: [], body: keep > 0 ? Buffer.from(p.payload.subarray(0, keep)) : null, body_size: p.length, truncated: keep < p.length };
  }

  private command(conn: Conn, stream: number, p: Packet): void {
    const b = p.payload;
    if (p.seq !== 0 || b.length === 0) {
      this.counters.unexplainedBytes += p.length;
      return; // e.g. LOAD DATA LOCAL file contents
    }
    const code = b[0]!;
    const name = MYSQL_COMMANDS[code] ?? `COM_0x${code.toString(16).padStart(2, '0')}`;
    let query = '';
    let stmtId = -1;
    switch (code) {
      case COM_QUERY: {
        const at = sqlStart(b, conn);
        query = b.toString('utf8', at < 0 ? 1 : at);
        break;
      }
      case COM_STMT_PREPARE:
      case COM_INIT_DB:
        query = b.toString('utf8', 1);
        break;
      case COM_FIELD_LIST: {
        const t = cstring(b, 1, 1024);
        query = t ? t[0] : b.toString('utf8', 1);
        break;
      }
      case COM_CHANGE_USER:
        break;
      case COM_STMT_EXECUTE:
      case COM_STMT_SEND_LONG_DATA:
      case COM_STMT_CLOSE:
      case COM_STMT_RESET:
      case COM_STMT_FETCH:
        if (b.length >= 5) {
          stmtId = u32(b, 1);
          query = conn.statements.get(stmtId) ?? '';
        }
        break;
      default:
        break;
    }
    const call = this.newCall(conn, name, code, query, p.start, this.message(p));
    call.stmtId = stmtId;
    if (code === COM_CHANGE_USER) {
      // user NUL, auth data (length byte with SECURE_CONNECTION, else NUL-terminated), database NUL.
      const u = cstring(b, 1);
      if (u) {
        let at = u[1];
        if (conn.caps & CLIENT_SECURE_CONNECTION) at += 1 + (b[at] ?? 0);
        else at = cstring(b, at, 1024)?.[1] ?? b.length;
        call.changeUser = { user: u[0], database: cstring(b, at)?.[0] ?? '' };
      }
    }
    if (code === COM_STMT_CLOSE && stmtId >= 0) conn.statements.delete(stmtId);
    if (code === COM_QUIT || code === COM_STMT_CLOSE || code === COM_STMT_SEND_LONG_DATA) {
      // No response by design: complete as it is.
      this.emitCall(conn, stream, call, true);
      return;
    }
    conn.calls.push(call);
    // A server that never answers: do not hold commands without bound.
    while (conn.calls.length > MAX_PENDING_CALLS || (conn.calls.length > 1 && held(conn) > MAX_HELD_BYTES)) {
      const old = conn.calls.shift()!;
      old.error = 'pair-not-found';
      this.emitCall(conn, stream, old);
    }
  }

  private addResponse(call: Call, p: Packet): void {
    const wire = 4 + p.length;
    call.size += wire;
    const keep = Math.min(wire, this.maxBody - call.kept);
    if (keep > 0 && !call.cut) {
      const head = Buffer.from([p.length & 0xff, (p.length >> 8) & 0xff, (p.length >> 16) & 0xff, p.seq]);
      const part = Buffer.concat([head, p.payload]).subarray(0, keep);
      call.parts.push(part);
      call.kept += part.length;
    }
    if (keep < wire) call.cut = true;
  }

  private isEof(p: Packet): boolean {
    return p.payload[0] === 0xfe && p.length < 9;
  }

  private response(conn: Conn, stream: number, p: Packet): void {
    const call = conn.calls[0];
    if (!call) {
      this.counters.unexplainedBytes += 4 + p.length;
      return;
    }
    const b = p.payload;
    call.responseStart ??= p.start;
    this.addResponse(call, p);
    const deprecateEof = (conn.caps & CLIENT_DEPRECATE_EOF) !== 0;
    switch (call.state) {
      case 'first': {
        if (b[0] === 0xff || (b[0] === 0x00 && call.code !== COM_STMT_PREPARE && p.length >= 7) || this.isEof(p)) {
          this.okOrErr(conn, call, b);
          if (call.responseKind === 'OK' && this.moreResults(b, 'OK')) return;
          this.finishCall(conn, stream);
          return;
        }
        if (call.code === COM_CHANGE_USER && (b[0] === 0xfe || b[0] === 0x01)) {
          // Re-authentication: auth switch / more data rounds, then OK or ERR.
          call.state = 'local-infile';
          return;
        }
        if (call.code === COM_STMT_PREPARE && b[0] === 0x00 && b.length >= 9) {
          call.responseKind = 'OK';
          call.stmtId = u32(b, 1);
          call.columns = u16(b, 5);
          call.params = u16(b, 7);
          conn.statements.set(call.stmtId, call.query);
          if (conn.statements.size > 4096) conn.statements.delete(conn.statements.keys().next().value!);
          this.prepareNext(conn, stream, call, 'prepare-params', deprecateEof);
          return;
        }
        if (call.code === COM_FIELD_LIST) {
          // Column definitions until EOF, no column count first.
          call.responseKind = 'RESULTSET';
          call.state = 'field-list';
          call.columns = 1;
          return;
        }
        if (b[0] === 0xfb && call.code === COM_QUERY) {
          // LOAD DATA LOCAL INFILE: the server names a file, the client sends it (packets with
          // sequence ids going on, ended by an empty one), then the server answers.
          call.state = 'local-infile';
          return;
        }
        if (call.code === COM_STATISTICS) {
          // COM_STATISTICS answers with a bare string.
          call.responseKind = 'DATA';
          this.finishCall(conn, stream);
          return;
        }
        const n = lenenc(b, 0);
        if (!n || n[0] === 0 || n[0] > 4096) {
          call.responseKind = 'DATA';
          call.error = 'dissection';
          this.finishCall(conn, stream);
          return;
        }
        call.responseKind = 'RESULTSET';
        if (call.columns === 0) call.columns = n[0];
        call.remaining = n[0];
        call.state = 'columns';
        return;
      }
      case 'columns':
        if (--call.remaining > 0) return;
        call.state = deprecateEof ? 'rows' : 'columns-eof';
        return;
      case 'columns-eof':
        call.state = 'rows';
        if (!this.isEof(p)) call.rows++; // tolerate a missing EOF
        return;
      case 'rows':
        if (b[0] === 0xff) {
          this.okOrErr(conn, call, b);
          this.finishCall(conn, stream);
          return;
        }
        if (b[0] === 0xfe && (deprecateEof ? p.length < MAX_PACKET : p.length < 9)) {
          if (this.moreResults(b, deprecateEof ? 'OK' : 'EOF')) {
            call.state = 'first';
            call.responseKind = 'RESULTSET';
            return;
          }
          this.finishCall(conn, stream);
          return;
        }
        call.rows++;
        return;
      case 'prepare-params':
      case 'prepare-columns':
        if (--call.remaining > 0) return;
        this.prepareNext(conn, stream, call, call.state, deprecateEof, true);
        return;
      case 'prepare-params-eof':
        this.prepareNext(conn, stream, call, 'prepare-columns', deprecateEof);
        return;
      case 'prepare-columns-eof':
        this.finishCall(conn, stream);
        return;
      case 'local-infile':
        if (b[0] !== 0x00 && b[0] !== 0xff) return; // another auth round
        this.okOrErr(conn, call, b);
        this.finishCall(conn, stream);
        return;
      case 'field-list':
        if (this.isEof(p) || b[0] === 0xff || (deprecateEof && b[0] === 0xfe)) {
          if (b[0] === 0xff) this.okOrErr(conn, call, b);
          this.finishCall(conn, stream);
          return;
        }
        call.columns++;
        return;
      default: {
        const never: never = call.state;
        throw new Error(`unknown state ${String(never)}`);
      }
    }
  }

  /** Moves a COM_STMT_PREPARE response to its next block (parameters, then columns, each with its EOF). */
  private prepareNext(conn: Conn, stream: number, call: Call, block: ResponseState, deprecateEof: boolean, blockDone = false): void {
    if (block === 'prepare-params' && !blockDone) {
      if (call.params > 0) {
        call.state = 'prepare-params';
        call.remaining = call.params;
        return;
      }
      this.prepareNext(conn, stream, call, 'prepare-columns', deprecateEof);
      return;
    }
    if (block === 'prepare-params' && blockDone) {
      if (!deprecateEof) call.state = 'prepare-params-eof';
      else this.prepareNext(conn, stream, call, 'prepare-columns', deprecateEof);
      return;
    }
    if (block === 'prepare-columns' && !blockDone) {
      if (call.columns > 0) {
        call.state = 'prepare-columns';
        call.remaining = call.columns;
        return;
      }
      this.finishCall(conn, stream);
      return;
    }
    if (!deprecateEof) call.state = 'prepare-columns-eof';
    else this.finishCall(conn, stream);
  }

  /** SERVER_MORE_RESULTS_EXISTS in an OK/EOF's status flags. */
  private moreResults(b: Buffer, kind: 'OK' | 'EOF'): boolean {
    if (kind === 'EOF') return b.length >= 5 && (u16(b, 3) & SERVER_MORE_RESULTS_EXISTS) !== 0;
    const a = lenenc(b, 1);
    if (!a) return false;
    const i = lenenc(b, 1 + a[1]);
    if (!i) return false;
    const at = 1 + a[1] + i[1];
    return at + 2 <= b.length && (u16(b, at) & SERVER_MORE_RESULTS_EXISTS) !== 0;
  }

  private okOrErr(conn: Conn, call: Call, b: Buffer): void {
    if (b[0] === 0xff) {
      call.responseKind = 'ERR';
      call.errorCode = b.length >= 3 ? u16(b, 1) : 0;
      let at = 3;
      if (b[at] === 0x23 && b.length >= at + 6) {
        call.sqlState = b.toString('latin1', at + 1, at + 6);
        at += 6;
      }
      call.errorMessage = b.toString('utf8', at);
      return;
    }
    if (b[0] === 0xfe) {
      call.responseKind = 'EOF';
      return;
    }
    call.responseKind = 'OK';
    const a = lenenc(b, 1);
    if (!a) return;
    call.affected = a[0];
    const i = lenenc(b, 1 + a[1]);
    if (i) call.insertId = i[0];
    // The database changes on a successful COM_INIT_DB, USE or COM_CHANGE_USER.
    if (call.code === COM_INIT_DB) conn.database = call.query;
    else if (call.changeUser) {
      conn.user = call.changeUser.user;
      conn.database = call.changeUser.database;
    }
    else if (call.code === COM_QUERY && sqlKeyword(call.query) === 'USE') {
      const m = /^\s*use\s+`?([^`;\s]+)`?/i.exec(call.query);
      if (m) conn.database = m[1]!;
    }
  }

  /** The call at the head of the queue got its whole response. */
  private finishCall(conn: Conn, stream: number): void {
    const call = conn.calls.shift();
    if (call) this.emitCall(conn, stream, call);
  }

  private emitCall(conn: Conn, stream: number, call: Call, noResponseExpected = false): void {
    const hasResponse = call.responseStart !== null;
    let error = call.error;
    if (!error && !hasResponse && !noResponseExpected && !(call.command === 'LOGIN' && conn.tls)) error = 'pair-not-found';
    const t0 = call.start;
    const rs = call.responseStart;
    const method = call.command === 'COM_QUERY' || call.command === 'COM_STMT_PREPARE' || call.command === 'COM_STMT_EXECUTE' ? sqlKeyword(call.query) || call.command : call.command;
    const entry: MysqlEntry = {
      protocol: 'mysql',
      stream,
      index: call.index,
      timestamp: t0.sec * 1e6 + Math.floor(t0.nsec / 1000),
      elapsed_time: rs ? Math.round(((rs.sec - t0.sec) * 1e9 + (rs.nsec - t0.nsec)) / 1000) : 0,
      method,
      path: call.database,
      url: call.database,
      status_code: call.errorCode,
      request: call.request,
      response: hasResponse ? { headers: [], body: call.kept > 0 ? Buffer.concat(call.parts) : null, body_size: call.size, truncated: call.cut } : null,
      mysql_command: call.command,
      mysql_query: call.query,
      mysql_statement_id: call.stmtId,
      mysql_response: call.responseKind,
      mysql_error_code: call.errorCode,
      mysql_sql_state: call.sqlState,
      mysql_error_message: call.errorMessage,
      mysql_affected_rows: call.affected,
      mysql_last_insert_id: call.insertId,
      mysql_rows: call.rows,
      mysql_columns: call.columns,
      mysql_database: call.database,
      mysql_user: conn.user,
      mysql_server_version: conn.version,
      mysql_connection_id: conn.connectionId,
      mysql_tls: conn.tls,
    };
    if (call.responseKind === 'ERR') entry.failure = `ERROR ${call.errorCode}${call.sqlState ? ` (${call.sqlState})` : ''}: ${call.errorMessage}`;
    if (error) {
      entry.error = error;
      this.counters.errors[error]++;
    }
    this.counters.entries++;
    this.emit(entry);
  }
}
