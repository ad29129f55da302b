import type { TcpChunk, TcpEnd, TcpGap } from '@kubeshark-mcp/capture';
import type { Entry, EntryError, EntryMessage } from './entry';
import type { StreamOpen, TcpDissector, TcpProtocol, Verdict } from './stream';

/**
 * PostgreSQL dissector (frontend/backend protocol 3.0): one `PostgresqlEntry` per exchange.
 * Pure: no I/O, no timers.
 *
 * Exchanges:
 * - `STARTUP`: the StartupMessage (user, database, application_name) and the server's answer
 *   through authentication to the first ReadyForQuery (or the ErrorResponse that refused it).
 *   Password and SASL messages are neither parsed nor kept in bodies.
 * - `SSL_REQUEST` / `GSSENC_REQUEST`: the request and the server's one-byte answer. `S` (or `G`)
 *   means the rest of the connection is encrypted: the entry says `postgresql_encryption:
 *   'accepted'` and dissection of the connection stops. `N` continues in clear (`refused`).
 * - `CANCEL`: a CancelRequest (sent on a connection of its own; there is no answer).
 * - `FUNCTION_CALL`: a FunctionCall (fast-path, e.g. large objects) through its ReadyForQuery.
 * - Simple query: one entry per Query message, through its ReadyForQuery; several statements
 *   in one Query give their command tags joined with `; `.
 * - Extended query: one entry per Execute. Its SQL is the Parse text of the statement the
 *   executed portal was bound to (named statements are remembered per connection), its request
 *   body the Parse/Bind/Describe/Execute bytes sent since the previous Execute or Sync, its
 *   response the server messages from those messages' answers to the Execute's completion
 *   (plus the ReadyForQuery when the Sync follows). Pipelined batches pair in order. An
 *   ErrorResponse fails every Execute left in its batch (the server skips them up to the
 *   Sync); a batch that fails without an Execute (a Parse with bad SQL) gives one entry.
 * - Method: the first keyword of the SQL upper-case (`SELECT`, `WITH`, ...), or the names above.
 * - `postgresql_rows`: DataRows returned when the statement returned rows, otherwise the count
 *   in the command tag (`INSERT 0 1` -> 1, `DELETE 2` -> 2).
 * - Errors: `failure` is `SQLSTATE <C>: <M>`; NoticeResponse, ParameterStatus and
 *   NotificationResponse are asynchronous and ignored. COPY data (both ways) is skipped.
 *
 * Parsing is streaming: message bodies are not buffered beyond what is needed (SQL text and
 * error fields, bounded), so a length claim of 1 GB costs nothing; raw bytes kept in bodies
 * are bounded by `maxBodySize`. Per connection at most 1024 exchanges wait (then the oldest
 * is given up) and 4 MiB of their bodies are kept (then bodies are `truncated`).
 *
 * Gaps and malformed messages end the message being read: a client direction resumes at a
 * later chunk starting with a plausible frontend message, a server direction at a later chunk
 * made of whole backend messages, or after the next ReadyForQuery; a direction joined
 * mid-stream starts the same way. Exchanges waiting for the lost answers end with
 * `dissection`, and so does one whose answer was cut by the end of the stream mid-message. A
 * server message that started before the request it would answer was sent belongs to a
 * request lost in a hole and is skipped through the next ReadyForQuery. An exchange still
 * waiting when its connection ends (a startup left at the password request, a query never
 * answered) is `pair-not-found`.
 */

export interface PostgresqlEntry extends Entry {
  protocol: 'postgresql';
  /** SQL text (at most `maxQueryLength` characters); '' for the startup and TLS exchanges. */
  postgresql_query: string;
  /** CommandComplete tag(s) (`SELECT 3`, `INSERT 0 1`), '' without one. */
  postgresql_command_tag: string;
  /** Rows returned (DataRows), or affected (the tag's count); 0 without either. */
  postgresql_rows: number;
  /** SQLSTATE of the ErrorResponse, and its message, when the server refused. */
  postgresql_error_code?: string;
  postgresql_error_message?: string;
  /** Error severity (`ERROR`, `FATAL`, `PANIC`). */
  postgresql_error_severity?: string;
  /** From the StartupMessage of the connection, when it was captured. */
  postgresql_database?: string;
  postgresql_user?: string;
  postgresql_application_name?: string;
  /** SSL_REQUEST and GSSENC_REQUEST: the server's answer. */
  postgresql_encryption?: 'accepted' | 'refused';
}

export interface PostgresqlDissectorOptions {
  /** Raw protocol bytes kept per entry message in `request.body` / `response.body`. Default 64 KiB. */
  maxBodySize?: number;
  /** Characters of SQL text kept. Default 16 KiB. */
  maxQueryLength?: number;
}

export interface PostgresqlDissectorStats {
  entries: number;
  errors: Record<EntryError, number>;
  /** Connections that switched to TLS or GSSAPI encryption. */
  encrypted: number;
  resyncs: number;
}

const DEFAULT_MAX_BODY = 64 * 1024;
const DEFAULT_MAX_QUERY = 16 * 1024;
/** PostgreSQL refuses startup packets over 10000 bytes, and messages over 1 GB. */
const MAX_STARTUP = 10000;
const MAX_MESSAGE = 0x40000000;
/** Body bytes parsed (kept) per message type; the rest is counted and skipped. */
const KEEP_SMALL = 1024;
const KEEP_ERROR = 8 * 1024;
/** Statements and portals remembered per connection. */
const MAX_NAMES = 1024;
/**
 * Per connection: exchanges waiting to be emitted, requests waiting for answers, and raw bytes
 * kept for pending exchanges. Past the first two, the oldest is given up (a pipelining client
 * with no answers in the capture); past the third, further bodies are not kept (`truncated`).
 */
const MAX_PENDING = 1024;
const MAX_PENDING_OPS = 4 * MAX_PENDING;
const MAX_PENDING_BYTES = 4 * 1024 * 1024;

const SSL_CODE = 80877103;
const GSSENC_CODE = 80877104;
const CANCEL_CODE = 80877102;
const PROTOCOL_3 = 0x30000;

const FRONTEND_TYPES = new Set('QPBEDCHSXFdcfp'.split(''));
const BACKEND_TYPES = new Set('RKSZTDCEINAGHWVdc123stnv'.split(''));

interface Time {
  sec: number;
  nsec: number;
}

interface Part {
  parts: Buffer[];
  kept: number;
  size: number;
  cut: boolean;
  start: Time | null;
}

type Kind = 'startup' | 'ssl' | 'gssenc' | 'cancel' | 'query' | 'execute' | 'batch';

interface Exchange {
  kind: Kind;
  method: string;
  query: string;
  request: Part;
  response: Part;
  tags: string[];
  rows: number;
  hasRows: boolean;
  error?: { code: string; message: string; severity: string };
  encryption?: 'accepted' | 'refused';
  /** Ready to emit. An Execute answered before its batch's Sync waits for the ReadyForQuery. */
  done: boolean;
  /** The Execute's answer (completion, suspension or error) came. */
  answered: boolean;
  damaged: boolean;
  /** Given up: no answer will complete it. */
  unanswered: boolean;
  /** Already emitted: later bytes for it are not kept. */
  emitted: boolean;
}

type OpKind = 'startup' | 'ssl' | 'gssenc' | 'query' | 'parse' | 'bind' | 'describe' | 'execute' | 'close' | 'sync';

interface Op {
  kind: OpKind;
  x: Exchange | null;
  /** Parse ops: the SQL, for a batch that fails before any Execute. */
  sql: string;
  start: Time;
}

/** Reader state of one direction. */
interface Dir {
  isClient: boolean | null;
  seen: boolean;
  /** Client: untyped startup-phase packets come next. */
  untyped: boolean;
  /** Lost sync: resume at a later chunk (client) or after the next ReadyForQuery (server). */
  lost: boolean;
  header: number[];
  type: string;
  /** Body bytes left to read, and the ones kept for parsing. */
  left: number;
  total: number;
  body: Buffer[];
  bodyKept: number;
  keep: number;
  raw: Part;
  /** Bytes of the Z pattern matched so far while a server direction looks for ReadyForQuery. */
  zMatch: number;
}

interface Conn {
  dirs: [Dir, Dir];
  ops: Op[];
  exchanges: Exchange[];
  /** Encrypted (TLS or GSSAPI) from here on: nothing more to read. */
  opaque: boolean;
  user?: string;
  database?: string;
  application?: string;
  statements: Map<string, string>;
  portals: Map<string, string>;
  /** Client messages of the current extended batch not yet given to an Execute. */
  batch: Part;
  batchOps: Op[];
  /** Server messages are skipped through the next ReadyForQuery (their request was lost). */
  skipToReady: boolean;
  /** Raw bytes that pending exchanges may still keep. */
  budget: { left: number };
}

const newPart = (): Part => ({ parts: [], kept: 0, size: 0, cut: false, start: null });
const newDir = (): Dir => ({ isClient: null, seen: false, untyped: false, lost: false, header: [], type: '', left: 0, total: 0, body: [], bodyKept: 0, keep: 0, raw: newPart(), zMatch: 0 });

/** First keyword of SQL text, upper-case, after comments and parentheses. */
export function sqlKeyword(sql: string): string {
  const s = sql.replace(/^(\s+|--[^\n]*(\n|$)|\/\*[\s\S]*?\*\/|\()+/, '');
  const m = /^[A-Za-z_]+/.exec(s);
  return m ? m[0].toUpperCase() : '';
}

/** Rows affected per a CommandComplete tag (`INSERT 0 5` -> 5), or null. */
export function tagRows(tag: string): number | null {
  const m = /^(?:INSERT \d+|SELECT|UPDATE|DELETE|MERGE|FETCH|MOVE|COPY) (\d+)$/.exec(tag);
  return m ? Number(m[1]) : null;
}

const ZPATTERN = [0x5a, 0, 0, 0, 5];

/** PostgreSQL over reassembled TCP streams; see the module comment. */
export class PostgresqlDissector implements TcpDissector {
  private readonly conns = new Map<number, Conn>();
  private readonly nextIndex = new Map<number, number>();
  private readonly maxBody: number;
  private readonly maxQuery: number;
  private readonly counters: PostgresqlDissectorStats = { entries: 0, errors: { 'pair-not-found': 0, timeout: 0, dissection: 0 }, encrypted: 0, resyncs: 0 };

  constructor(
    private readonly emit: (entry: PostgresqlEntry) => void,
    options: PostgresqlDissectorOptions = {},
  ) {
    this.maxBody = options.maxBodySize ?? DEFAULT_MAX_BODY;
    this.maxQuery = options.maxQueryLength ?? DEFAULT_MAX_QUERY;
  }

  stats(): PostgresqlDissectorStats {
    return { ...this.counters, errors: { ...this.counters.errors } };
  }

  open(stream: number, info: StreamOpen): void {
    const c = this.conn(stream);
    if (info.clientDir !== undefined) {
      c.dirs[info.clientDir].isClient = true;
      c.dirs[info.clientDir].untyped = true;
      c.dirs[info.clientDir === 0 ? 1 : 0].isClient = false;
    }
  }

  onData(c: TcpChunk): void {
    const conn = this.conn(c.stream);
    if (conn.opaque) return;
    const d = conn.dirs[c.dir];
    const other = conn.dirs[c.dir === 0 ? 1 : 0];
    const buf = c.buf;
    const end = c.start + c.length;
    if (!d.seen) {
      d.seen = true;
      if (d.isClient === null) {
        d.isClient = other.isClient !== null ? !other.isClient : looksLikeClient(buf.subarray(c.start, end));
        other.isClient = !d.isClient;
        // Unknown handshake: a client starting with a length word is in its startup phase.
        d.untyped = d.isClient && buf[c.start] === 0;
        other.untyped = false;
      }
      if ((c.offset > 0 || c.midStream) && !d.untyped) this.lose(conn, c.stream, d, false);
    }
    const time: Time = { sec: c.firstSec, nsec: c.firstNsec };
    let i = c.start;
    if (d.lost) {
      if (d.isClient) {
        if (!plausibleFrontend(buf, c.start, end)) return;
        d.lost = false;
      } else if (d.zMatch === 0 && plausibleBackend(buf, c.start, end)) {
        d.lost = false;
      } else {
        // Look for ReadyForQuery: 'Z', length 5, status I, T or E.
        for (; i < end && d.lost; i++) {
          const b = buf[i]!;
          if (d.zMatch === 5) {
            d.zMatch = b === 0x49 || b === 0x54 || b === 0x45 ? 6 : 0;
            if (d.zMatch === 6) {
              d.lost = false;
              d.zMatch = 0;
            }
          } else if (b === ZPATTERN[d.zMatch]) d.zMatch++;
          else d.zMatch = b === ZPATTERN[0] ? 1 : 0;
        }
        if (d.lost) return;
      }
    }
    while (i < end && !conn.opaque && !d.lost) {
      const head = conn.ops[0];
      // The one-byte answer to SSLRequest / GSSENCRequest.
      if (!d.isClient && d.header.length === 0 && d.left === 0 && head && (head.kind === 'ssl' || head.kind === 'gssenc')) {
        const b = buf[i]!;
        if (b === 0x53 || b === 0x4e || (b === 0x47 && head.kind === 'gssenc')) {
          this.addRaw(head.x!.response, buf, i, i + 1, time);
          i++;
          conn.ops.shift();
          const x = head.x!;
          x.encryption = b === 0x4e ? 'refused' : 'accepted';
          x.done = true;
          if (b !== 0x4e) {
            conn.opaque = true;
            this.counters.encrypted++;
            // Whatever else was waiting will not be seen in clear.
            for (const e of conn.exchanges) if (!e.done) e.unanswered = true;
            conn.ops = [];
          } else {
            const cd = conn.dirs[c.dir === 0 ? 1 : 0];
            cd.untyped = true;
          }
          this.drain(conn, c.stream);
          continue;
        }
        // Old servers answer an ErrorResponse: read it as a message.
      }
      const n = this.read(conn, c.stream, d, buf, i, end, time);
      if (n < 0) {
        this.lose(conn, c.stream, d, true);
        return;
      }
      i = n;
    }
  }

  onGap(g: TcpGap): void {
    const conn = this.conn(g.stream);
    const d = conn.dirs[g.dir];
    d.seen = true;
    if (conn.opaque) return;
    this.lose(conn, g.stream, d, true);
  }

  onEnd(e: TcpEnd): void {
    const conn = this.conns.get(e.stream);
    if (!conn) return;
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

  private conn(stream: number): Conn {
    let c = this.conns.get(stream);
    if (!c) {
      c = { dirs: [newDir(), newDir()], ops: [], exchanges: [], opaque: false, statements: new Map(), portals: new Map(), batch: newPart(), batchOps: [], skipToReady: false, budget: { left: MAX_PENDING_BYTES } };
      this.conns.set(stream, c);
    }
    return c;
  }

  /**
   * Reads message bytes from buf[i, end): a header, then the body (kept up to the type's
   * limit). Returns the position after what was consumed, or -1 on a malformed message.
   */
  private read(conn: Conn, stream: number, d: Dir, buf: Uint8Array, i: number, end: number, time: Time): number {
    if (d.left === 0 && (d.header.length > 0 || d.type === '')) {
      const need = d.untyped ? 4 : 5;
      const from = i;
      while (d.header.length < need && i < end) d.header.push(buf[i++]!);
      if (d.raw.start === null) d.raw.start = time;
      this.addRaw(d.raw, buf, from, i, time);
      if (d.header.length < need) return i;
      const h = d.header;
      const len = ((h[need - 4]! << 24) | (h[need - 3]! << 16) | (h[need - 2]! << 8) | h[need - 1]!) >>> 0;
      const type = d.untyped ? '' : String.fromCharCode(h[0]!);
      if (d.untyped ? len < 8 || len > MAX_STARTUP : len < 4 || len > MAX_MESSAGE) return -1;
      if (!d.untyped && !(d.isClient ? FRONTEND_TYPES : BACKEND_TYPES).has(type)) return -1;
      d.header = [];
      d.type = d.untyped ? '\0' : type;
      d.total = len - 4;
      d.left = len - 4;
      d.keep = this.keepFor(d);
      d.body = [];
      d.bodyKept = 0;
      if (d.left === 0) {
        this.complete(conn, stream, d);
        return i;
      }
    }
    const n = Math.min(d.left, end - i);
    const keep = Math.min(n, d.keep - d.bodyKept);
    if (keep > 0) {
      d.body.push(Buffer.from(buf.subarray(i, i + keep)));
      d.bodyKept += keep;
    }
    this.addRaw(d.raw, buf, i, i + n, time);
    d.left -= n;
    i += n;
    if (d.left === 0) this.complete(conn, stream, d);
    return i;
  }

  private keepFor(d: Dir): number {
    if (d.untyped) return MAX_STARTUP;
    const t = d.type;
    if (d.isClient) return t === 'Q' || t === 'P' ? this.maxQuery * 4 + KEEP_SMALL : t === 'p' || t === 'd' ? 0 : KEEP_SMALL;
    return t === 'E' ? KEEP_ERROR : t === 'D' || t === 'd' ? 0 : KEEP_SMALL;
  }

  private addRaw(p: Part, buf: Uint8Array, a: number, b: number, time: Time): void {
    if (p.start === null) p.start = time;
    const n = b - a;
    if (n <= 0) return;
    p.size += n;
    const keep = Math.min(n, this.maxBody - p.kept);
    if (keep > 0) {
      p.parts.push(Buffer.from(buf.subarray(a, a + keep)));
      p.kept += keep;
    }
    if (keep < n) p.cut = true;
  }

  /** A whole message was read. */
  private complete(conn: Conn, stream: number, d: Dir): void {
    const body = d.body.length === 1 ? d.body[0]! : Buffer.concat(d.body);
    const bodyCut = d.bodyKept < d.total;
    const type = d.type;
    const raw = d.raw;
    d.raw = newPart();
    d.type = '';
    d.body = [];
    d.bodyKept = 0;
    if (d.isClient) {
      this.frontend(conn, stream, d, type, body, bodyCut, raw);
      this.drain(conn, stream); // exchanges given up for the pending bound
    } else this.backend(conn, stream, type, body, raw);
  }

  private newExchange(kind: Kind, method: string, query: string): Exchange {
    return { kind, method, query, request: newPart(), response: newPart(), tags: [], rows: 0, hasRows: false, done: false, answered: false, damaged: false, unanswered: false, emitted: false };
  }

  private push(conn: Conn, x: Exchange): void {
    conn.exchanges.push(x);
    if (conn.exchanges.length > MAX_PENDING) conn.exchanges[0]!.unanswered = true;
    if (conn.ops.length > MAX_PENDING_OPS) conn.ops.splice(0, conn.ops.length - MAX_PENDING_OPS);
  }

  private frontend(conn: Conn, stream: number, d: Dir, type: string, body: Buffer, cut: boolean, raw: Part): void {
    const start = raw.start!;
    if (type === '\0') {
      const code = body.length >= 4 ? body.readUInt32BE(0) : 0;
      if (code === SSL_CODE || code === GSSENC_CODE) {
        const ssl = code === SSL_CODE;
        const x = this.newExchange(ssl ? 'ssl' : 'gssenc', ssl ? 'SSL_REQUEST' : 'GSSENC_REQUEST', '');
        merge(x.request, raw, this.maxBody, conn.budget);
        this.push(conn, x);
        conn.ops.push({ kind: ssl ? 'ssl' : 'gssenc', x, sql: '', start });
        return; // still untyped: a StartupMessage follows a refusal
      }
      if (code === CANCEL_CODE) {
        const x = this.newExchange('cancel', 'CANCEL', '');
        merge(x.request, raw, this.maxBody, conn.budget);
        x.done = true;
        this.push(conn, x);
        this.drain(conn, stream);
        return;
      }
      if (code >>> 16 !== PROTOCOL_3 >>> 16) {
        this.lose(conn, stream, d, true);
        return;
      }
      const params = cstrings(body, 4);
      for (let k = 0; k + 1 < params.length; k += 2) {
        if (params[k] === 'user') conn.user = params[k + 1];
        else if (params[k] === 'database') conn.database = params[k + 1];
        else if (params[k] === 'application_name') conn.application = params[k + 1];
      }
      if (conn.database === undefined && conn.user !== undefined) conn.database = conn.user; // the server's default
      d.untyped = false;
      const x = this.newExchange('startup', 'STARTUP', '');
      merge(x.request, raw, this.maxBody, conn.budget);
      this.push(conn, x);
      conn.ops.push({ kind: 'startup', x, sql: '', start });
      return;
    }
    switch (type) {
      case 'Q': {
        const sql = this.sql(cstrings(body, 0)[0] ?? '', cut);
        const x = this.newExchange('query', sqlKeyword(sql), sql);
        merge(x.request, raw, this.maxBody, conn.budget);
        this.push(conn, x);
        conn.ops.push({ kind: 'query', x, sql, start });
        return;
      }
      case 'P': {
        const [name = '', text = ''] = cstrings(body, 0, 2);
        const sql = this.sql(text, cut);
        remember(conn.statements, name, sql);
        this.batchOp(conn, { kind: 'parse', x: null, sql, start }, raw);
        return;
      }
      case 'B': {
        const [portal = '', statement = ''] = cstrings(body, 0, 2);
        remember(conn.portals, portal, conn.statements.get(statement) ?? '');
        this.batchOp(conn, { kind: 'bind', x: null, sql: '', start }, raw);
        return;
      }
      case 'D':
        this.batchOp(conn, { kind: 'describe', x: null, sql: '', start }, raw);
        return;
      case 'C': {
        const [name = ''] = cstrings(body, 1, 1);
        if (body[0] === 0x53) conn.statements.delete(name);
        else conn.portals.delete(name);
        this.batchOp(conn, { kind: 'close', x: null, sql: '', start }, raw);
        return;
      }
      case 'E': {
        const [portal = ''] = cstrings(body, 0, 1);
        const sql = conn.portals.get(portal) ?? '';
        const x = this.newExchange('execute', sqlKeyword(sql), sql);
        merge(x.request, conn.batch, this.maxBody, conn.budget);
        merge(x.request, raw, this.maxBody, conn.budget);
        conn.batch = newPart();
        for (const op of conn.batchOps) op.x ??= x;
        this.push(conn, x);
        const op: Op = { kind: 'execute', x, sql, start };
        conn.ops.push(op);
        conn.batchOps.push(op);
        return;
      }
      case 'S': {
        const last = [...conn.batchOps].reverse().find((o) => o.x !== null);
        const op: Op = { kind: 'sync', x: last?.x ?? null, sql: '', start };
        if (!last) {
          // A batch without Execute: answered, it makes no entry; failed, one (see backend 'E').
          op.sql = conn.batchOps.find((o) => o.kind === 'parse')?.sql ?? '';
        }
        conn.ops.push(op);
        conn.batchOps = [];
        conn.batch = newPart();
        return;
      }
      case 'F': {
        // FunctionCall: answered by FunctionCallResponse and ReadyForQuery, like a simple query.
        const x = this.newExchange('query', 'FUNCTION_CALL', '');
        merge(x.request, raw, this.maxBody, conn.budget);
        this.push(conn, x);
        conn.ops.push({ kind: 'query', x, sql: '', start });
        return;
      }
      default:
        // Flush, Terminate, CopyData/Done/Fail, password messages: nothing to pair.
        return;
    }
  }

  private batchOp(conn: Conn, op: Op, raw: Part): void {
    merge(conn.batch, raw, this.maxBody);
    conn.ops.push(op);
    conn.batchOps.push(op);
  }

  private sql(text: string, cut: boolean): string {
    return text.length > this.maxQuery || cut ? `${text.slice(0, this.maxQuery)}…` : text;
  }

  private backend(conn: Conn, stream: number, type: string, body: Buffer, raw: Part): void {
    if (type === 'N' || type === 'A' || (type === 'S' && conn.ops[0]?.kind !== 'startup')) return; // asynchronous
    if (conn.skipToReady) {
      if (type === 'Z') conn.skipToReady = false;
      return;
    }
    const op = conn.ops[0];
    if (!op || after(op.start, raw.start!)) {
      // An answer to a request that was not captured (or was lost in a hole).
      if (type !== 'Z') conn.skipToReady = true;
      return;
    }
    const x = op.x;
    if (x && !x.emitted) merge(x.response, raw, this.maxBody, conn.budget);
    const pop = (): void => {
      conn.ops.shift();
    };
    switch (type) {
      case 'Z':
        // Ends the startup, a simple query, or an extended batch (its Sync).
        while (conn.ops.length > 0) {
          const o = conn.ops.shift()!;
          if (o.x && !o.x.done) {
            // An Execute with no answer before the ReadyForQuery never got one.
            if (o.kind === 'execute' || (o.kind === 'sync' && !o.x.answered && o.x.kind === 'execute')) o.x.unanswered = true;
            else o.x.done = true;
          }
          if (o.kind === 'sync' || o.kind === 'query' || o.kind === 'startup') break;
        }
        break;
      case 'E': {
        const f = errorFields(body);
        if (op.kind === 'startup' || op.kind === 'query' || op.kind === 'ssl' || op.kind === 'gssenc') {
          if (x) x.error ??= f;
          if (op.kind === 'startup' || op.kind === 'ssl' || op.kind === 'gssenc') {
            // The server closes the connection after a startup error.
            pop();
            if (x) x.done = true;
          }
          break;
        }
        // Extended: every op up to the Sync is skipped by the server; its Executes fail.
        const failed: Exchange[] = [];
        while (conn.ops.length > 0 && conn.ops[0]!.kind !== 'sync') {
          const o = conn.ops.shift()!;
          if (o.kind === 'execute' && o.x && !o.x.answered) failed.push(o.x);
        }
        const sync = conn.ops[0];
        for (const e of failed) this.answer(e, sync);
        for (const e of failed) e.error = f;
        if (failed.length === 0) {
          const target = x ?? sync?.x ?? null;
          if (target && !target.answered) {
            target.error = f;
            this.answer(target, sync);
          } else {
            const b = this.newExchange('batch', sqlKeyword(op.sql || sync?.sql || ''), op.sql || sync?.sql || '');
            b.request.start = op.start;
            merge(b.response, raw, this.maxBody, conn.budget);
            b.error = f;
            b.answered = true;
            b.done = !sync; // with the batch's ReadyForQuery
            this.push(conn, b);
            if (sync) sync.x = b;
          }
        }
        break;
      }
      case 'R':
      case 'K':
      case 'S':
      case 'v':
        break;
      case '1':
      case '2':
      case '3':
      case 'n':
        if (op.kind === 'parse' || op.kind === 'bind' || op.kind === 'close' || op.kind === 'describe') pop();
        break;
      case 't':
        break;
      case 'T':
        if (op.kind === 'describe') pop();
        else if (x) x.hasRows = true;
        break;
      case 'D':
        if (x && (op.kind === 'execute' || op.kind === 'query')) {
          x.rows++;
          x.hasRows = true;
        }
        break;
      case 'C':
      case 'I':
      case 's': {
        if (type === 'C' && x) x.tags.push(cstrings(body, 0, 1)[0] ?? '');
        if (op.kind === 'execute') {
          pop();
          if (x) this.answer(x, conn.ops[0]);
        }
        break;
      }
      default:
        // CopyIn/Out/Both responses and CopyData/CopyDone: the COPY ends with CommandComplete.
        break;
    }
    this.drain(conn, stream);
  }

  /** An Execute was answered: it is emitted now, or with the ReadyForQuery when its batch's Sync comes next. */
  private answer(x: Exchange, next: Op | undefined): void {
    x.answered = true;
    x.done = !(next?.kind === 'sync' && next.x === x);
  }

  /** Bytes were lost or could not be parsed in direction d. */
  private lose(conn: Conn, stream: number, d: Dir, count: boolean): void {
    if (count) this.counters.resyncs++;
    this.partial(conn, d);
    const isClient = d.isClient;
    Object.assign(d, { ...newDir(), isClient, seen: true, lost: true });
    if (isClient) {
      // The batch being built may miss messages; the server's answers to what was lost are
      // skipped by the time rule (they start before any later request).
      conn.batch = newPart();
      conn.batchOps = [];
    } else {
      // Answers were lost: what waits for them cannot be completed.
      for (const op of conn.ops) if (op.x && !op.x.done) op.x.damaged = true;
      for (const op of conn.ops) if (op.x) op.x.unanswered = true;
      conn.ops = [];
      conn.skipToReady = false;
    }
    this.drain(conn, stream);
  }

  private drain(conn: Conn, stream: number): void {
    while (conn.exchanges.length > 0) {
      const x = conn.exchanges[0]!;
      if (!x.done && !x.unanswered) return;
      conn.exchanges.shift();
      conn.budget.left += x.request.kept + x.response.kept;
      x.emitted = true;
      this.emitExchange(conn, x, stream);
    }
  }

  /** The bytes of a server message cut short still belong to the answer being read. */
  private partial(conn: Conn, d: Dir): void {
    const x = conn.ops[0]?.x;
    if (!d.isClient && x && !x.emitted && !conn.skipToReady && d.raw.size > 0) {
      merge(x.response, d.raw, this.maxBody, conn.budget);
      x.response.cut = true;
      x.damaged = true;
    }
    d.raw = newPart();
  }

  private finish(conn: Conn, stream: number): void {
    for (const d of conn.dirs) this.partial(conn, d);
    for (const x of conn.exchanges) if (!x.done) x.unanswered = true;
    this.drain(conn, stream);
  }

  private emitExchange(conn: Conn, x: Exchange, stream: number): void {
    const index = this.nextIndex.get(stream) ?? 0;
    this.nextIndex.set(stream, index + 1);
    const q = x.request.start;
    const r = x.response.start;
    const t0 = q ?? r ?? { sec: 0, nsec: 0 };
    const tag = x.tags.join('; ');
    const lastTag = x.tags[x.tags.length - 1] ?? '';
    const entry: PostgresqlEntry = {
      protocol: 'postgresql',
      stream,
      index,
      timestamp: t0.sec * 1e6 + Math.floor(t0.nsec / 1000),
      elapsed_time: q && r ? Math.round(((r.sec - q.sec) * 1e9 + (r.nsec - q.nsec)) / 1000) : 0,
      method: x.method,
      path: conn.database ?? '',
      url: conn.database ?? '',
      status_code: 0,
      request: x.request.size > 0 ? message(x.request) : null,
      response: x.response.size > 0 ? message(x.response) : null,
      postgresql_query: x.query,
      postgresql_command_tag: tag,
      postgresql_rows: x.hasRows ? x.rows : (tagRows(lastTag) ?? 0),
    };
    if (conn.database !== undefined) entry.postgresql_database = conn.database;
    if (conn.user !== undefined) entry.postgresql_user = conn.user;
    if (conn.application !== undefined) entry.postgresql_application_name = conn.application;
    if (x.encryption) entry.postgresql_encryption = x.encryption;
    if (x.error) {
      entry.postgresql_error_code = x.error.code;
      entry.postgresql_error_message = x.error.message;
      entry.postgresql_error_severity = x.error.severity;
      entry.failure = `SQLSTATE ${x.error.code}: ${x.error.message}`;
    }
    let error: EntryError | undefined;
    if (x.damaged) error = 'dissection';
    else if (!x.done && x.kind !== 'cancel') error = 'pair-not-found'; // not complete when the stream ended
    if (error) {
      entry.error = error;
      this.counters.errors[error]++;
    }
    this.counters.entries++;
    this.emit(entry);
  }
}

function message(p: Part): EntryMessage {
  return { headers: [], body: p.kept > 0 ? Buffer.concat(p.parts) : null, body_size: p.size, truncated: p.cut };
}

/** Appends the raw bytes of `src` to `dst`, bounded by max. */
function merge(dst: Part, src: Part, max: number, budget?: { left: number }): void {
  if (src.size === 0) return;
  if (dst.start === null) dst.start = src.start;
  for (const b of src.parts) {
    const keep = Math.max(0, Math.min(b.length, max - dst.kept, budget ? budget.left : Infinity));
    if (keep > 0) {
      dst.parts.push(keep === b.length ? b : b.subarray(0, keep));
      dst.kept += keep;
      if (budget) budget.left -= keep;
    }
    if (keep < b.length) dst.cut = true;
  }
  dst.size += src.size;
  if (src.cut) dst.cut = true;
}

function remember(map: Map<string, string>, key: string, value: string): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > MAX_NAMES) map.delete(map.keys().next().value!);
}

/** NUL-terminated strings from `from` (at most `max`); an unterminated tail counts as one. */
function cstrings(b: Buffer, from: number, max = Infinity): string[] {
  const out: string[] = [];
  let i = from;
  while (i < b.length && out.length < max) {
    let z = b.indexOf(0, i);
    if (z < 0) z = b.length;
    if (z === i && from === 4 && out.length % 2 === 0) break; // end of startup parameters
    out.push(b.toString('utf8', i, z));
    i = z + 1;
  }
  return out;
}

/** Fields of an ErrorResponse: SQLSTATE, message and severity. */
function errorFields(b: Buffer): { code: string; message: string; severity: string } {
  const f = { code: '', message: '', severity: '' };
  let i = 0;
  while (i < b.length && b[i] !== 0) {
    const t = String.fromCharCode(b[i]!);
    let z = b.indexOf(0, i + 1);
    if (z < 0) z = b.length;
    const v = b.toString('utf8', i + 1, z);
    if (t === 'C') f.code = v;
    else if (t === 'M') f.message = v;
    else if (t === 'V' || (t === 'S' && f.severity === '')) f.severity = v;
    i = z + 1;
  }
  return f;
}

/** a is strictly later than b. */
function after(a: Time, b: Time): boolean {
  return a.sec > b.sec || (a.sec === b.sec && a.nsec > b.nsec);
}

const u32 = (b: Uint8Array, i: number): number => ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;

/** A chunk a lost client direction may resume at: a frontend message header with a sane length. */
function plausibleFrontend(b: Uint8Array, from: number, to: number): boolean {
  if (to - from < 5) return false;
  const t = String.fromCharCode(b[from]!);
  const len = u32(b, from + 1);
  if (t === 'S' || t === 'H' || t === 'c' || t === 'X') return len === 4;
  return (t === 'Q' || t === 'P' || t === 'B' || t === 'E' || t === 'D' || t === 'C') && len >= 5 && len <= 1 << 24;
}

/**
 * A chunk a lost server direction may resume at: backend messages back to back from its first
 * byte, all with known types and sane lengths, ending with the chunk (or two or more whole
 * ones, then the start of another).
 */
function plausibleBackend(b: Uint8Array, from: number, to: number): boolean {
  let i = from;
  let whole = 0;
  while (to - i >= 5) {
    const len = u32(b, i + 1);
    if (!BACKEND_TYPES.has(String.fromCharCode(b[i]!)) || len < 4 || len > 1 << 24) return false;
    if (i + 1 + len > to) return whole >= 2;
    i += 1 + len;
    whole++;
  }
  return i === to ? whole >= 1 : whole >= 2;
}

function looksLikeClient(b: Uint8Array): boolean {
  if (b.length === 0) return false;
  if (b[0] === 0) return true;
  return 'QPBXpF'.includes(String.fromCharCode(b[0]!));
}

/** Client first bytes: a startup-phase packet (StartupMessage 3.x, SSLRequest, GSSENCRequest, CancelRequest). */
function clientVerdict(b: Uint8Array): Verdict {
  if (b.length === 0) return 'more';
  for (let i = 0; i < Math.min(b.length, 2); i++) if (b[i] !== 0) return 'no';
  if (b.length < 8) return 'more';
  const len = u32(b, 0);
  const code = u32(b, 4);
  if (code === SSL_CODE || code === GSSENC_CODE) return len === 8 ? 'yes' : 'no';
  if (code === CANCEL_CODE) return len === 16 ? 'yes' : 'no';
  if (code !== PROTOCOL_3 || len < 9 || len > MAX_STARTUP) return 'no';
  // Parameters: NUL-terminated names and values, no other control bytes; the first name a
  // lower-case identifier (`user`, `database`, ...).
  const end = Math.min(b.length, len);
  if (end <= 8) return 'more';
  for (let i = 8; i < end; i++) if (b[i]! < 0x20 && b[i] !== 0) return 'no';
  const nul = b.indexOf(0, 8);
  const name = Buffer.from(b.subarray(8, nul < 0 || nul > end ? end : nul)).toString('latin1');
  if (!/^[a-z_][a-z0-9_.]*$/.test(name)) return name === '' && end === 8 ? 'more' : 'no';
  return nul >= 0 && nul < end ? 'yes' : 'more';
}

/** Server first bytes: an Authentication request or ErrorResponse, possibly after the one-byte answer to SSLRequest. */
function serverVerdict(b: Uint8Array): Verdict {
  if (b.length === 0) return 'more';
  let i = 0;
  if (b[0] === 0x4e || b[0] === 0x53 || b[0] === 0x47) {
    if (b.length === 1) return 'more';
    if (b[0] !== 0x4e && b[1] === 0x16) return b.length < 3 ? 'more' : b[2] === 0x03 ? 'yes' : 'no'; // TLS after 'S'
    i = 1;
  }
  const t = b[i]!;
  if (t !== 0x52 && t !== 0x45) return 'no';
  if (b.length < i + 9) return 'more';
  const len = u32(b, i + 1);
  if (t === 0x52) {
    const auth = u32(b, i + 5);
    return len >= 8 && len <= 2048 && [0, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12].includes(auth) ? 'yes' : 'no';
  }
  // ErrorResponse: fields start with 'S' (severity) and stay printable.
  return len >= 8 && len <= 8192 && b[i + 5] === 0x53 && b[i + 6]! >= 0x41 && b[i + 6]! <= 0x5a ? 'yes' : 'no';
}

/** PostgreSQL: port 5432; detected on the startup phase (client) or the server's first answer. */
export const POSTGRESQL_PROTOCOL: TcpProtocol = {
  name: 'postgresql',
  ports: [5432],
  detect(bytes: Uint8Array, fromClient: boolean | undefined): Verdict {
    if (fromClient === true) return clientVerdict(bytes);
    if (fromClient === false) return serverVerdict(bytes);
    const c = clientVerdict(bytes);
    if (c === 'yes') return 'yes';
    const s = serverVerdict(bytes);
    return s === 'yes' ? 'yes' : c === 'more' || s === 'more' ? 'more' : 'no';
  },
};
