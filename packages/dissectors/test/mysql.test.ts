import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { TcpChunk, TcpDirection } from '@kubeshark-mcp/capture';
import { GOLDEN_DIR, goldenCaptures } from '@kubeshark-mcp/testkit';
import { MYSQL_COMMANDS, MYSQL_PROTOCOL, MysqlDissector, sqlKeyword, type MysqlDissectorOptions, type MysqlEntry } from '../src/mysql';
import type { StreamOpen, TcpDissector } from '../src/stream';
import { feedCapture } from './support/feed';
import { type MongodbEntry } from '../src/mongodb';
import { type StreamRouter } from '../src/router';
import { type WebSocketEntry } from '../src/websocket';
import { prng, damage } from './support/damage';
import { routeMysqlMongodbWebSocket } from './support/feed';

/**
 * The MySQL dissector against tshark's MySQL fields for the same captures
 * (fixtures/golden/<capture>/mysql.psv, scripts/golden-mysql.sh), then behaviour on hand-made
 * streams, then detection and robustness on damaged captures.
 *
 * How we compare, per tcp.stream: the greeting (server version, connection id), the login (user,
 * database, TLS request), then the client's commands in order (command code, SQL, schema) and,
 * for each, the server's answer as tshark shows it in the frames before the next command: the
 * first response code (OK 0x00, ERR 0xff, or a result set's column count), affected rows and
 * insert id of an OK, error code/state/message of an ERR. Rows are not a tshark field: tshark
 * lists the sequence id of every packet of the response, so rows = packets - 1 (column count) -
 * columns - 2 (EOFs) for a result set, and columns = packets - 1 (EOF) for COM_FIELD_LIST.
 *
 * Deliberate differences: we emit an entry for the login (`LOGIN`), which tshark shows as two
 * packets without a command; when the client asks for TLS, tshark shows the SSLRequest only
 * (mysql.caps.sl = 1) and so do we (`mysql_tls`, no response expected).
 */

const CAPTURES = ['ndpi/mysql.pcapng', 'zeek/mysql_mysql.pcap'];

interface Row {
  /** frame.time_epoch in nanoseconds. */
  timeNs: bigint;
  stream: number;
  fromServer: boolean;
  seqs: number[];
  command: string;
  query: string;
  table: string;
  schema: string;
  user: string;
  codes: string[];
  errorCode: string;
  sqlState: string;
  errorMessage: string;
  affected: string;
  insertId: string;
  numFields: string;
  version: string;
  threadId: string;
  ssl: string;
}

/** `1216281025.136434000` -> nanoseconds. */
function epochNs(s: string): bigint {
  const [i, f = ''] = s.split('.');
  return BigInt(i!) * 1_000_000_000n + BigInt(f.padEnd(9, '0'));
}

function loadGolden(capture: string): Row[] {
  const [head, ...lines] = readFileSync(path.join(GOLDEN_DIR, capture, 'mysql.psv'), 'utf8').split('\n');
  const cols = head!.split('|');
  return lines
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const f = l.split('|');
      const at = (n: string): string => f[cols.indexOf(n)] ?? '';
      const list = (n: string): string[] => (at(n) === '' ? [] : at(n).split(';'));
      return {
        timeNs: epochNs(at('frame.time_epoch')),
        stream: Number(at('tcp.stream')),
        fromServer: at('tcp.srcport') === '3306',
        seqs: list('mysql.packet_number').map(Number),
        command: at('mysql.command'),
        query: at('mysql.query'),
        table: at('mysql.table_name'),
        schema: at('mysql.schema'),
        user: at('mysql.user'),
        codes: list('mysql.response_code'),
        errorCode: at('mysql.error_code'),
        sqlState: at('mysql.sqlstate'),
        errorMessage: at('mysql.error.message'),
        affected: at('mysql.affected_rows'),
        insertId: at('mysql.insert_id'),
        numFields: at('mysql.num_fields'),
        version: at('mysql.version'),
        threadId: at('mysql.thread_id'),
        ssl: at('mysql.caps.sl'),
      };
    });
}

interface Call {
  stream: number;
  /** Request time (µs) and elapsed time to the first response frame (µs, 0 without one). */
  timestamp: number;
  elapsed: number;
  command: string;
  query: string;
  response: string;
  affected: number;
  insertId: number;
  errorCode: number;
  sqlState: string;
  errorMessage: string;
  columns: number;
  rows: number;
}

/** tshark's commands per stream, each with the answer the server frames after it carry. */
function tsharkCalls(rows: Row[]): Call[] {
  const out: Call[] = [];
  let cur: { call: Call; packets: number; eofs: number; first: boolean; timeNs: bigint } | null = null;
  const close = (): void => {
    if (!cur) return;
    const c = cur.call;
    if (c.response === 'RESULTSET') {
      if (c.command === 'COM_FIELD_LIST') c.columns = cur.packets - 1;
      else c.rows = cur.packets - 1 - c.columns - cur.eofs;
    }
    out.push(c);
    cur = null;
  };
  for (const r of rows) {
    if (!r.fromServer && r.command !== '') {
      close();
      const command = MYSQL_COMMANDS[Number(r.command)]!;
      const query = command === 'COM_INIT_DB' ? r.schema : command === 'COM_FIELD_LIST' ? r.table : r.query;
      cur = { call: { stream: r.stream, timestamp: Number(r.timeNs / 1000n), elapsed: 0, command, query, response: '', affected: 0, insertId: 0, errorCode: 0, sqlState: '', errorMessage: '', columns: 0, rows: 0 }, packets: 0, eofs: 0, first: true, timeNs: r.timeNs };
      continue;
    }
    if (!r.fromServer || !cur || r.stream !== cur.call.stream) continue;
    const c = cur.call;
    if (cur.first) {
      cur.first = false;
      c.elapsed = Math.round(Number(r.timeNs - cur.timeNs) / 1000);
      const code = r.codes[0];
      if (code === '0x00') c.response = 'OK';
      else if (code === '0xff') c.response = 'ERR';
      else if (r.numFields !== '' || c.command === 'COM_FIELD_LIST') c.response = 'RESULTSET';
      c.columns = r.numFields === '' ? 0 : Number(r.numFields);
      c.affected = r.affected === '' ? 0 : Number(r.affected);
      c.insertId = r.insertId === '' ? 0 : Number(r.insertId);
      c.errorCode = r.errorCode === '' ? 0 : Number(r.errorCode);
      c.sqlState = r.sqlState;
      c.errorMessage = r.errorMessage;
    }
    cur.packets += r.seqs.length;
    cur.eofs += r.codes.filter((x) => x === '0xfe').length;
  }
  close();
  // COM_QUIT has no answer.
  return out;
}

function ourCalls(entries: MysqlEntry[], tcpStream: Map<number, number>): Call[] {
  return entries
    .filter((e) => e.mysql_command !== 'LOGIN')
    .map((e) => ({
      stream: tcpStream.get(e.stream)!,
      timestamp: e.timestamp,
      elapsed: e.elapsed_time,
      command: e.mysql_command,
      query: e.mysql_query,
      response: e.mysql_response,
      affected: e.mysql_affected_rows,
      insertId: e.mysql_last_insert_id,
      errorCode: e.mysql_error_code,
      sqlState: e.mysql_sql_state,
      errorMessage: e.mysql_error_message,
      columns: e.mysql_columns,
      rows: e.mysql_rows,
    }));
}

interface Run {
  entries: MysqlEntry[];
  tcpStream: Map<number, number>;
  dissector: MysqlDissector;
}

async function run(capture: string, options: MysqlDissectorOptions = {}, wrap?: (d: TcpDissector) => TcpDissector): Promise<Run> {
  const entries: MysqlEntry[] = [];
  const dissector = new MysqlDissector((e) => entries.push(e), options);
  const { tcpStream } = await feedCapture(capture, wrap ? wrap(dissector) : dissector);
  entries.sort((a, b) => tcpStream.get(a.stream)! - tcpStream.get(b.stream)! || a.index - b.index);
  return { entries, tcpStream, dissector };
}

describe.each(CAPTURES)('%s against tshark', (capture) => {
  let r: Run;
  const rows = loadGolden(capture);
  beforeAll(async () => {
    r = await run(capture);
  });

  test('same commands, SQL, answers, affected rows, columns and rows per tcp.stream; same times', () => {
    const expected = tsharkCalls(rows);
    expect(expected.length).toBeGreaterThan(0);
    expect(ourCalls(r.entries, r.tcpStream)).toEqual(expected);
  });

  test('greeting and login: version, connection id, user, database, TLS', () => {
    const streams = [...new Set(rows.map((x) => x.stream))];
    for (const s of streams) {
      const mine = r.entries.filter((e) => r.tcpStream.get(e.stream) === s);
      const greeting = rows.find((x) => x.stream === s && x.version !== '')!;
      const login = rows.find((x) => x.stream === s && !x.fromServer && x.seqs[0] === 1)!;
      expect(mine[0]!.mysql_command).toBe('LOGIN');
      for (const e of mine) {
        expect([e.mysql_server_version, e.mysql_connection_id]).toEqual([greeting.version, Number(greeting.threadId)]);
        expect(e.mysql_user).toBe(login.user);
        expect(e.mysql_tls).toBe(login.ssl === '1');
      }
      if (login.ssl === '1') {
        // The rest is TLS: the login entry is all there is.
        expect(mine).toHaveLength(1);
        expect(mine[0]!.response).toBeNull();
        expect(mine[0]!.error).toBeUndefined();
      } else expect(mine[0]).toMatchObject({ mysql_response: 'OK', mysql_database: login.schema });
    }
  });

  test('generic fields: method, path, status, failure, pairing', () => {
    let database = '';
    for (const e of r.entries) {
      expect(e.protocol).toBe('mysql');
      const keyword = sqlKeyword(e.mysql_query);
      expect(e.method).toBe(e.mysql_command === 'COM_QUERY' && keyword ? keyword : e.mysql_command);
      expect(e.status_code).toBe(e.mysql_error_code);
      expect(e.failure).toBeUndefined();
      expect(e.error).toBeUndefined();
      if (e.mysql_command === 'COM_INIT_DB') database = e.mysql_query;
      if (e.index > 0 && database !== '' && e.mysql_command !== 'COM_INIT_DB') expect(e.path).toBe(database);
      if (e.mysql_command !== 'COM_QUIT' && !e.mysql_tls) expect(e.elapsed_time).toBeGreaterThan(0);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Hand-made streams.

const le16 = (n: number): number[] => [n & 0xff, (n >> 8) & 0xff];
const le32 = (n: number): number[] => [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff];
const z = (s: string): number[] => [...Buffer.from(s, 'utf8'), 0];
const lenencInt = (n: number): number[] => (n < 251 ? [n] : n < 65536 ? [0xfc, ...le16(n)] : [0xfd, n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff]);
const lenencStr = (s: string): number[] => [...lenencInt(Buffer.byteLength(s)), ...Buffer.from(s, 'utf8')];

function pkt(seq: number, payload: number[] | Buffer): Buffer {
  const p = Buffer.from(payload);
  return Buffer.concat([Buffer.from([p.length & 0xff, (p.length >> 8) & 0xff, (p.length >> 16) & 0xff, seq]), p]);
}

const CAPS = 0x0200 | 0x8000 | 0x0008 | 0x80000; // PROTOCOL_41, SECURE_CONNECTION, CONNECT_WITH_DB, PLUGIN_AUTH
const DEPRECATE_EOF = 0x1000000;
const SSL = 0x800;

const greeting = (caps = CAPS): Buffer =>
  pkt(0, [0x0a, ...z('8.0.36'), ...le32(77), ...Array<number>(8).fill(0x41), 0, ...le16(caps & 0xffff), 0xff, ...le16(2), ...le16(caps >>> 16), 21, ...Array<number>(10).fill(0), ...Array<number>(12).fill(0x42), 0, ...z('caching_sha2_password')]);
const login = (user: string, db: string, caps = CAPS): Buffer =>
  pkt(1, [...le32(caps), ...le32(16 * 1024 * 1024), 0xff, ...Array<number>(23).fill(0), ...z(user), 20, ...Array<number>(20).fill(7), ...z(db), ...z('caching_sha2_password')]);
const ok = (seq: number, affected = 0, insertId = 0, status = 2, header = 0x00): Buffer => pkt(seq, [header, ...lenencInt(affected), ...lenencInt(insertId), ...le16(status), ...le16(0)]);
const err = (seq: number, code: number, state: string, msg: string): Buffer => pkt(seq, [0xff, ...le16(code), 0x23, ...Buffer.from(state), ...Buffer.from(msg)]);
const eof = (seq: number, status = 2): Buffer => pkt(seq, [0xfe, ...le16(0), ...le16(status)]);
const colDef = (seq: number, name: string): Buffer =>
  pkt(seq, [...lenencStr('def'), ...lenencStr('shop'), ...lenencStr('t'), ...lenencStr('t'), ...lenencStr(name), ...lenencStr(name), 0x0c, ...le16(33), ...le32(255), 0xfd, ...le16(0), 0, 0, 0]);
const row = (seq: number, values: string[]): Buffer => pkt(seq, values.flatMap(lenencStr));
const query = (sql: string): Buffer => pkt(0, [0x03, ...Buffer.from(sql, 'utf8')]);
const command = (code: number, rest: number[] = []): Buffer => pkt(0, [code, ...rest]);

/** A result set: column count, definitions, (EOF), rows, then EOF or (DEPRECATE_EOF) an OK with the 0xFE header. */
function resultSet(columns: string[], rows: string[][], deprecateEof = false, lastStatus = 2): Buffer {
  let seq = 1;
  const parts = [pkt(seq++, lenencInt(columns.length)), ...columns.map((c) => colDef(seq++, c))];
  if (!deprecateEof) parts.push(eof(seq++));
  for (const r of rows) parts.push(row(seq++, r));
  parts.push(deprecateEof ? ok(seq++, 0, 0, lastStatus, 0xfe) : eof(seq++, lastStatus));
  return Buffer.concat(parts);
}

/** Feeds hand-made bytes as the reassembler would; client is direction 0. */
class Feed {
  readonly entries: MysqlEntry[] = [];
  readonly d: MysqlDissector;
  private readonly offsets: [number, number] = [0, 0];
  private ended = 0;

  constructor(options: MysqlDissectorOptions = {}, info: StreamOpen = { clientDir: 0 }, readonly stream = 3) {
    this.d = new MysqlDissector((e) => this.entries.push(e), options);
    this.d.open(stream, info);
  }

  data(dir: TcpDirection, bytes: Buffer, t: number, midStream = false): this {
    const wrapped = Buffer.concat([Buffer.from('zz'), bytes, Buffer.from('yy')]);
    const sec = Math.floor(t / 1000);
    const nsec = (t % 1000) * 1e6;
    this.d.onData({ stream: this.stream, dir, offset: this.offsets[dir], buf: wrapped, start: 2, length: bytes.length, firstSec: sec, firstNsec: nsec, lastSec: sec, lastNsec: nsec, midStream });
    wrapped.fill(0); // only valid during the call
    this.offsets[dir] += bytes.length;
    return this;
  }

  gap(dir: TcpDirection, length: number, t: number): this {
    this.d.onGap({ stream: this.stream, dir, offset: this.offsets[dir], length, reason: 'acked', sec: Math.floor(t / 1000), nsec: 0 });
    this.offsets[dir] += length;
    return this;
  }

  end(): MysqlEntry[] {
    for (const dir of [0, 1] as const) this.d.onEnd({ stream: this.stream, dir, offset: this.offsets[dir], reason: 'fin', sec: 0, nsec: 0, closed: ++this.ended === 2 });
    return this.entries;
  }
}

/** A whole conversation as (direction, bytes) messages. */
type Script = [TcpDirection, Buffer][];

const CONVERSATION: Script = [
  [1, greeting()],
  [0, login('app', 'shop')],
  [1, ok(2)],
  [0, query('SELECT id, name FROM t')],
  [1, resultSet(['id', 'name'], [['1', 'a'], ['2', 'b'], ['3', 'c']])],
  [0, query('insert into t (name) values ("d")')],
  [1, ok(1, 1, 42)],
  [0, query('select * from nope')],
  [1, err(1, 1146, '42S02', "Table 'shop.nope' doesn't exist")],
  [0, command(0x02, [...Buffer.from('other')])],
  [1, ok(1)],
  [0, command(0x04, [...z('t'), ...Buffer.from('%')])],
  [1, Buffer.concat([colDef(1, 'id'), colDef(2, 'name'), eof(3)])],
  [0, command(0x0e)],
  [1, ok(1)],
  [0, command(0x01)],
];

const summary = (es: MysqlEntry[]): unknown[] =>
  es.map((e) => [e.index, e.method, e.mysql_command, e.mysql_query, e.mysql_response, e.path, e.status_code, e.mysql_affected_rows, e.mysql_last_insert_id, e.mysql_columns, e.mysql_rows, e.failure, e.error]);

const EXPECTED = [
  [0, 'LOGIN', 'LOGIN', '', 'OK', 'shop', 0, 0, 0, 0, 0, undefined, undefined],
  [1, 'SELECT', 'COM_QUERY', 'SELECT id, name FROM t', 'RESULTSET', 'shop', 0, 0, 0, 2, 3, undefined, undefined],
  [2, 'INSERT', 'COM_QUERY', 'insert into t (name) values ("d")', 'OK', 'shop', 0, 1, 42, 0, 0, undefined, undefined],
  [3, 'SELECT', 'COM_QUERY', 'select * from nope', 'ERR', 'shop', 1146, 0, 0, 0, 0, "ERROR 1146 (42S02): Table 'shop.nope' doesn't exist", undefined],
  [4, 'COM_INIT_DB', 'COM_INIT_DB', 'other', 'OK', 'shop', 0, 0, 0, 0, 0, undefined, undefined],
  [5, 'COM_FIELD_LIST', 'COM_FIELD_LIST', 't', 'RESULTSET', 'other', 0, 0, 0, 2, 0, undefined, undefined],
  [6, 'COM_PING', 'COM_PING', '', 'OK', 'other', 0, 0, 0, 0, 0, undefined, undefined],
  [7, 'COM_QUIT', 'COM_QUIT', '', '', 'other', 0, 0, 0, 0, 0, undefined, undefined],
];

function play(script: Script, split?: number, options: MysqlDissectorOptions = {}): MysqlEntry[] {
  const f = new Feed(options);
  script.forEach(([dir, bytes], i) => {
    if (split === undefined || split >= bytes.length) f.data(dir, bytes, 1000 + i * 10);
    else f.data(dir, bytes.subarray(0, split), 1000 + i * 10).data(dir, bytes.subarray(split), 1000 + i * 10 + 1);
  });
  return f.end();
}

describe('MySQL by hand', () => {
  test('login, result set, OK with insert id, ERR, INIT_DB, FIELD_LIST, PING, QUIT', () => {
    const es = play(CONVERSATION);
    expect(summary(es)).toEqual(EXPECTED);
    const e = es[3]!;
    expect([e.mysql_error_code, e.mysql_sql_state, e.mysql_error_message]).toEqual([1146, '42S02', "Table 'shop.nope' doesn't exist"]);
    expect(es.every((x) => x.mysql_user === 'app' && x.mysql_server_version === '8.0.36' && x.mysql_connection_id === 77)).toBe(true);
    expect(es[1]!.elapsed_time).toBe(10_000);
    expect(es[1]!.timestamp).toBe(1_030_000);
    // Request body: the command packet's payload; response: the packets as sent.
    expect(Buffer.from(es[1]!.request!.body!).toString('utf8', 1)).toBe('SELECT id, name FROM t');
    expect(es[1]!.response!.body_size).toBe(CONVERSATION[4]![1].length);
  });

  test('the same entries whatever the segment boundaries (every split point, and byte by byte)', () => {
    const longest = Math.max(...CONVERSATION.map(([, b]) => b.length));
    for (let split = 1; split < longest; split++) expect([split, summary(play(CONVERSATION, split))]).toEqual([split, EXPECTED]);
    const f = new Feed();
    CONVERSATION.forEach(([dir, bytes], i) => {
      for (let k = 0; k < bytes.length; k++) f.data(dir, bytes.subarray(k, k + 1), 1000 + i * 10);
    });
    expect(summary(f.end())).toEqual(EXPECTED);
  });

  test('result sets with and without CLIENT_DEPRECATE_EOF; multiple result sets', () => {
    for (const deprecate of [false, true]) {
      const caps = deprecate ? CAPS | DEPRECATE_EOF : CAPS;
      const es = play([
        [1, greeting(caps)],
        [0, login('u', '', caps)],
        [1, ok(2)],
        [0, query('select a from t')],
        [1, resultSet(['a'], [['x'], ['y'], ['z'], ['w']], deprecate)],
        [0, query('CALL two()')],
        // First result set says more results follow (SERVER_MORE_RESULTS_EXISTS), then a final OK.
        [1, Buffer.concat([resultSet(['a', 'b'], [['1', '2']], deprecate, 0x0a), ok(deprecate ? 6 : 7, 0, 0, 2)])],
        [0, command(0x0e)],
        [1, ok(1)],
      ]);
      expect([deprecate, es.map((e) => [e.mysql_command, e.method, e.mysql_response, e.mysql_columns, e.mysql_rows, e.error])]).toEqual([
        deprecate,
        [
          ['LOGIN', 'LOGIN', 'OK', 0, 0, undefined],
          ['COM_QUERY', 'SELECT', 'RESULTSET', 1, 4, undefined],
          ['COM_QUERY', 'CALL', 'OK', 2, 1, undefined],
          ['COM_PING', 'COM_PING', 'OK', 0, 0, undefined],
        ],
      ]);
    }
  });

  test('prepared statements: PREPARE gives the id, EXECUTE shows its SQL, CLOSE has no response', () => {
    const sql = 'SELECT name FROM users WHERE id = ?';
    const stmt = (code: number, id: number, rest: number[] = []): Buffer => command(code, [...le32(id), ...rest]);
    const es = play([
      [1, greeting()],
      [0, login('u', 'db')],
      [1, ok(2)],
      [0, pkt(0, [0x16, ...Buffer.from(sql)])],
      [1, Buffer.concat([pkt(1, [0x00, ...le32(7), ...le16(1), ...le16(1), 0, ...le16(0)]), colDef(2, '?'), eof(3), colDef(4, 'name'), eof(5)])],
      [0, stmt(0x17, 7, [0, ...le32(1), 0, 1, 0x08, 0, ...le32(5), ...le32(0)])],
      [1, Buffer.concat([pkt(1, [1]), colDef(2, 'name'), eof(3), pkt(4, [0x00, 0x00, ...lenencStr('ann')]), eof(5)])],
      [0, stmt(0x19, 7)],
      [0, stmt(0x17, 7, [0, ...le32(1)])],
      [1, err(1, 1243, 'HY000', 'Unknown prepared statement handler (7) given to mysqld_stmt_execute')],
    ]);
    expect(es.map((e) => [e.mysql_command, e.method, e.mysql_statement_id, e.mysql_query, e.mysql_response, e.mysql_rows, e.error])).toEqual([
      ['LOGIN', 'LOGIN', -1, '', 'OK', 0, undefined],
      ['COM_STMT_PREPARE', 'SELECT', 7, sql, 'OK', 0, undefined],
      ['COM_STMT_EXECUTE', 'SELECT', 7, sql, 'RESULTSET', 1, undefined],
      ['COM_STMT_CLOSE', 'COM_STMT_CLOSE', 7, sql, '', 0, undefined],
      ['COM_STMT_EXECUTE', 'COM_STMT_EXECUTE', 7, '', 'ERR', 0, undefined],
    ]);
    expect(es[4]!.failure).toBe('ERROR 1243 (HY000): Unknown prepared statement handler (7) given to mysqld_stmt_execute');
  });

  test('auth switch, access denied, USE changes the path', () => {
    const switched = play([
      [1, greeting()],
      [0, login('u', '')],
      [1, pkt(2, [0xfe, ...z('mysql_native_password'), ...Array<number>(20).fill(1), 0])],
      [0, pkt(3, Array<number>(20).fill(9))],
      [1, ok(4)],
      [0, query('use `inventory`')],
      [1, ok(1)],
      [0, query('select 1')],
      [1, resultSet(['1'], [['1']])],
    ]);
    expect(switched.map((e) => [e.mysql_command, e.mysql_response, e.path, e.error])).toEqual([
      ['LOGIN', 'OK', '', undefined],
      ['COM_QUERY', 'OK', '', undefined],
      ['COM_QUERY', 'RESULTSET', 'inventory', undefined],
    ]);
    const denied = play([
      [1, greeting()],
      [0, login('root', '')],
      [1, err(2, 1045, '28000', "Access denied for user 'root'@'10.0.0.1' (using password: YES)")],
    ]);
    expect(denied).toHaveLength(1);
    expect(denied[0]).toMatchObject({ mysql_command: 'LOGIN', status_code: 1045, failure: "ERROR 1045 (28000): Access denied for user 'root'@'10.0.0.1' (using password: YES)", mysql_user: 'root' });
  });

  test('COM_CHANGE_USER: auth rounds until OK; the session takes the new user and database', () => {
    const es = play([
      [1, greeting()],
      [0, login('app', 'shop')],
      [1, ok(2)],
      [0, command(0x11, [...z('admin'), 20, ...Array<number>(20).fill(3), ...z('ops'), 0x21, 0x00, ...z('caching_sha2_password')])],
      [1, pkt(1, [0xfe, ...z('mysql_native_password'), ...Array<number>(20).fill(1), 0])],
      [0, pkt(2, Array<number>(20).fill(9))],
      [1, ok(3)],
      [0, command(0x0e)],
      [1, ok(1)],
    ]);
    expect(es.map((e) => [e.mysql_command, e.mysql_response, e.mysql_user, e.path, e.error])).toEqual([
      ['LOGIN', 'OK', 'app', 'shop', undefined],
      ['COM_CHANGE_USER', 'OK', 'admin', 'shop', undefined],
      ['COM_PING', 'OK', 'admin', 'ops', undefined],
    ]);
  });

  test('SSLRequest: one LOGIN entry saying TLS, the TLS bytes are not parsed', () => {
    const sslRequest = pkt(1, [...le32(CAPS | SSL), ...le32(16 * 1024 * 1024), 0xff, ...Array<number>(23).fill(0)]);
    const f = new Feed();
    f.data(1, greeting(CAPS | SSL), 1).data(0, sslRequest, 2);
    f.data(0, Buffer.from('1603010200010001fc0303', 'hex'), 3).data(1, Buffer.from('160303007a020000760303', 'hex'), 4);
    const es = f.end();
    expect(es.map((e) => [e.mysql_command, e.mysql_tls, e.response, e.error])).toEqual([['LOGIN', true, null, undefined]]);
    expect(f.d.stats().tlsStreams).toBe(1);
  });

  test('CLIENT_QUERY_ATTRIBUTES: the SQL after the attribute block (none, or typed named values)', () => {
    const QA = 0x8000000;
    const attrs = (sql: string, block: number[]): Buffer => pkt(0, [0x03, ...block, ...Buffer.from(sql)]);
    // Two attributes: a LONGLONG `n` = 5 and a VARCHAR `tag` = "x"; then one NULL (type LONG).
    const two = [3, 1, 0b100, 1, 8, 0, ...lenencStr('n'), 15, 0, ...lenencStr('tag'), 3, 0, ...lenencStr('z'), ...Array<number>(8).fill(0).map((_, i) => (i === 0 ? 5 : 0)), ...lenencStr('x')];
    const es = play([
      [1, greeting(CAPS | QA)],
      [0, login('u', '', CAPS | QA)],
      [1, ok(2)],
      [0, attrs('select 1', [0, 1])],
      [1, resultSet(['1'], [['1']])],
      [0, attrs('update t set a = 1', two)],
      [1, ok(1, 3)],
    ]);
    expect(es.map((e) => [e.method, e.mysql_query, e.mysql_affected_rows])).toEqual([
      ['LOGIN', '', 0],
      ['SELECT', 'select 1', 0],
      ['UPDATE', 'update t set a = 1', 3],
    ]);
    // Joined after the login: the empty block is recognised, and detection accepts it.
    const f = new Feed({}, { clientDir: undefined });
    f.data(0, attrs('SELECT 2', [0, 1]), 1).data(1, resultSet(['2'], [['2']]), 2);
    expect(f.end().map((e) => [e.method, e.mysql_query])).toEqual([['SELECT', 'SELECT 2']]);
    expect(MYSQL_PROTOCOL.detect(attrs('SELECT 2', [0, 1]), true)).toBe('yes');
  });

  test('the compressed protocol after the login: the login entry, then nothing is guessed', () => {
    const COMPRESS = 0x20;
    const f = new Feed();
    f.data(1, greeting(CAPS | COMPRESS), 1).data(0, login('u', 'db', CAPS | COMPRESS), 2).data(1, ok(2), 3);
    f.data(0, Buffer.from('0c0000000000000000', 'hex'), 4).data(1, Buffer.from('0b00000100000000', 'hex'), 5);
    expect(f.end().map((e) => [e.mysql_command, e.mysql_response, e.error])).toEqual([['LOGIN', 'OK', undefined]]);
    expect(f.d.stats().compressedStreams).toBe(1);
  });

  test('joined mid-stream inside a result set: both sides wait for a command to start a chunk', () => {
    const f = new Feed({}, { clientDir: undefined });
    const rs = resultSet(['a'], [['1'], ['2']]);
    f.data(1, rs.subarray(9), 1, true); // the middle of a response: no packet starts here
    f.data(0, query('SELECT 2'), 2, true).data(1, resultSet(['2'], [['2'], ['3']]), 3);
    expect(f.end().map((e) => [e.method, e.mysql_rows, e.error])).toEqual([['SELECT', 2, undefined]]);
    expect(f.d.stats().resyncs).toBe(2);
  });

  test('without the handshake: roles by content, commands still paired', () => {
    const f = new Feed({}, { clientDir: undefined });
    f.data(1, query('SELECT 1'), 1).data(0, resultSet(['1'], [['1']]), 2).data(1, query('DELETE FROM t'), 3).data(0, ok(1, 5), 4);
    expect(f.end().map((e) => [e.method, e.mysql_response, e.mysql_rows, e.mysql_affected_rows, e.error])).toEqual([
      ['SELECT', 'RESULTSET', 1, 0, undefined],
      ['DELETE', 'OK', 0, 5, undefined],
    ]);
  });

  test('bounded: a huge query and a huge result set keep at most maxBodySize, counts stay exact', () => {
    const sql = `SELECT '${'x'.repeat(300_000)}'`;
    const rows = Array.from({ length: 2000 }, (_, i) => [`row-${i}`]);
    const es = play(
      [
        [0, query(sql)],
        [1, resultSet(['v'], rows)],
      ],
      undefined,
      { maxBodySize: 512 },
    );
    expect(es).toHaveLength(1);
    const e = es[0]!;
    expect([e.mysql_rows, e.request!.body!.length, e.request!.body_size, e.request!.truncated, e.response!.body!.length, e.response!.truncated]).toEqual([2000, 512, sql.length + 1, true, 512, true]);
    expect(e.method).toBe('SELECT');
  });

  test('a gap inside a response flags the command; the next command is parsed again', () => {
    const f = new Feed();
    const rs = resultSet(['a'], [['1'], ['2'], ['3']]);
    f.data(1, greeting(), 1).data(0, login('u', ''), 2).data(1, ok(2), 3);
    f.data(0, query('select a from t'), 4).data(1, rs.subarray(0, 20), 5).gap(1, 10, 6);
    f.data(0, query('select 2'), 7).data(1, resultSet(['2'], [['2']]), 8);
    const es = f.end();
    expect(es.map((e) => [e.mysql_query, e.mysql_response, e.error])).toEqual([
      ['', 'OK', undefined],
      ['select a from t', 'RESULTSET', 'dissection'],
      ['select 2', 'RESULTSET', undefined],
    ]);
    expect(f.d.stats().resyncs).toBe(1);
  });

  test('a gap in the client direction: the server waits for the client to resume', () => {
    const f = new Feed();
    f.data(0, query('select 1'), 1).gap(0, 30, 2).data(1, resultSet(['1'], [['1']]), 3).data(1, ok(1), 4);
    f.data(0, query('select 3'), 5).data(1, resultSet(['3'], [['3']]), 6);
    const es = f.end();
    expect(es.map((e) => [e.mysql_query, e.error])).toEqual([
      ['select 1', 'dissection'],
      ['select 3', undefined],
    ]);
  });

  test('LOAD DATA LOCAL INFILE: the upload is skipped, the OK after it answers the query', () => {
    const es = play([
      [0, query("LOAD DATA LOCAL INFILE '/tmp/a.csv' INTO TABLE t")],
      [1, pkt(1, [0xfb, ...Buffer.from('/tmp/a.csv')])],
      [0, Buffer.concat([pkt(2, [...Buffer.from('1,a\n2,b\n')]), pkt(3, [])])],
      [1, ok(4, 2)],
      [0, command(0x0e)],
      [1, ok(1)],
    ]);
    expect(es.map((e) => [e.method, e.mysql_response, e.mysql_affected_rows, e.error])).toEqual([
      ['LOAD', 'OK', 2, undefined],
      ['COM_PING', 'OK', 0, undefined],
    ]);
  });

  test('memory per stream is bounded: a 20 MB packet, 100k rows, 1000 unanswered commands', () => {
    const f = new Feed({ maxBodySize: 4096 });
    let peak = 0;
    const watch = (): void => {
      peak = Math.max(peak, f.d.stats().bufferedBytes);
    };
    f.data(0, query('select big'), 1);
    const head = pkt(1, [1]);
    f.data(1, Buffer.concat([head, colDef(2, 'b'), eof(3)]), 2);
    const len = 0xfffffe;
    f.data(1, Buffer.from([len & 0xff, (len >> 8) & 0xff, len >> 16, 4]), 3);
    for (let sent = 0; sent < len; sent += 65_536) {
      f.data(1, Buffer.alloc(Math.min(65_536, len - sent), 0x61), 4);
      watch();
    }
    for (let i = 0; i < 100_000; i++) f.data(1, row(5 + i, [`r${i}`]), 5);
    f.data(1, eof(6), 6);
    watch();
    for (let i = 0; i < 1000; i++) {
      f.data(0, query(`select ${'x'.repeat(10_000)} -- ${i}`), 7);
      watch();
    }
    const es = f.end();
    expect(peak).toBeLessThanOrEqual(4 * 1024 * 1024 + 2 * 4096 + 65_536);
    expect(es[0]).toMatchObject({ mysql_rows: 100_001, response: { truncated: true } });
    expect(es.filter((e) => e.error === 'pair-not-found')).toHaveLength(1000);
  });

  test('a command never answered is pair-not-found at the end', () => {
    const f = new Feed();
    f.data(0, query('select sleep(100)'), 1);
    expect(f.end().map((e) => [e.method, e.error])).toEqual([['SELECT', 'pair-not-found']]);
  });
});

// ---------------------------------------------------------------------------------------------
// Detection.

/** The first bytes (up to 4 KiB) each direction of each TCP stream of a capture sent, and who sent them. */
async function firstBytes(capture: string): Promise<{ bytes: Buffer; fromClient: boolean | undefined; key: string }[]> {
  const out = new Map<string, { parts: Buffer[]; size: number; fromClient: boolean | undefined }>();
  const client = new Map<number, TcpDirection | undefined>();
  const rec: TcpDissector = {
    open: (s: number, i: StreamOpen) => client.set(s, i.clientDir),
    flush: () => undefined,
    onGap: () => undefined,
    onEnd: () => undefined,
    onData: (c: TcpChunk) => {
      const key = `${c.stream}/${c.dir}`;
      const cd = client.get(c.stream);
      const o = out.get(key) ?? { parts: [], size: 0, fromClient: cd === undefined ? undefined : cd === c.dir };
      out.set(key, o);
      if (o.size >= 4096 || c.offset !== o.size) return;
      const n = Math.min(c.length, 4096 - o.size);
      o.parts.push(Buffer.from(c.buf.subarray(c.start, c.start + n)));
      o.size += n;
    },
  };
  await feedCapture(capture, rec);
  return [...out].map(([key, o]) => ({ key, bytes: Buffer.concat(o.parts), fromClient: o.fromClient }));
}

/** The verdicts the router would see as the bytes arrive: every prefix up to 64 bytes, then the whole. */
function verdicts(bytes: Buffer, fromClient: boolean | undefined): Set<string> {
  const seen = new Set<string>();
  for (let n = 1; n <= Math.min(64, bytes.length); n++) seen.add(MYSQL_PROTOCOL.detect(bytes.subarray(0, n), fromClient));
  seen.add(MYSQL_PROTOCOL.detect(bytes, fromClient));
  return seen;
}

describe('detection', () => {
  test.each(CAPTURES)('%s: the server greeting is claimed; the login alone is not', async (capture) => {
    const firsts = await firstBytes(capture);
    for (const { key, bytes, fromClient } of firsts) {
      const server = fromClient === false;
      for (const dir of new Set([fromClient, undefined])) expect([key, dir, MYSQL_PROTOCOL.detect(bytes, dir)]).toEqual([key, dir, server ? 'yes' : 'no']);
      // Before the greeting is whole the answer is `more`, never a wrong `no`.
      if (server) for (let n = 1; n < 20; n++) expect(MYSQL_PROTOCOL.detect(bytes.subarray(0, n), false)).toBe('more');
    }
  });

  test('a COM_QUERY seen first (capture joined after the login) is claimed; text that is not a query is not', () => {
    const d = MYSQL_PROTOCOL.detect;
    expect([d(query('SELECT 1'), true), d(query('SELECT 1'), undefined), d(query('SELECT 1').subarray(0, 6), true)]).toEqual(['yes', 'yes', 'more']);
    expect([d(pkt(0, [0x03, 0x01, 0x02, 0x03]), true), d(pkt(1, [0x03, ...Buffer.from('x')]), true), d(pkt(0, [0x0e]), true)]).toEqual(['no', 'no', 'no']);
    // A server refusing the connection sends an ERR first (no SQLSTATE); claimed when whole and printable.
    const refusal = pkt(0, [0xff, ...le16(1130), ...Buffer.from("Host '10.0.0.7' is not allowed to connect to this MySQL server")]);
    expect([d(refusal, false), d(refusal, undefined), d(refusal.subarray(0, 20), false), d(Buffer.concat([refusal, Buffer.from([1])]), false)]).toEqual(['yes', 'yes', 'more', 'no']);
    const refused = new Feed();
    refused.data(1, refusal, 1);
    expect(refused.end().map((e) => [e.mysql_command, e.status_code, e.failure])).toEqual([['LOGIN', 1130, "ERROR 1130: Host '10.0.0.7' is not allowed to connect to this MySQL server"]]);
  });

  const others = goldenCaptures().filter((c) => !CAPTURES.includes(c));
  test.each(others)('%s: no stream is claimed', async (capture) => {
    for (const { key, bytes, fromClient } of await firstBytes(capture)) {
      for (const dir of new Set([fromClient, undefined])) expect([key, dir, verdicts(bytes, dir).has('yes')]).toEqual([key, dir, false]);
    }
  });

  test('random bytes are not claimed', () => {
    const rand = prng(99);
    let claimed = 0;
    for (let i = 0; i < 20000; i++) {
      const b = Buffer.from(Array.from({ length: 8 + Math.floor(rand() * 120) }, () => Math.floor(rand() * 256)));
      for (const dir of [true, false, undefined]) if (MYSQL_PROTOCOL.detect(b, dir) === 'yes') claimed++;
    }
    expect(claimed).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Robustness.



describe.each(CAPTURES)('%s damaged', (capture) => {
  test('truncated, flipped and holed streams: no exception, other streams unchanged, bounded output', async () => {
    const clean = await run(capture);
    const streams = [...new Set(clean.entries.map((e) => e.stream))];
    const strip = (es: MysqlEntry[], s: number): unknown[] => es.filter((e) => e.stream !== s);
    let changed = 0;
    let runs = 0;
    for (const mode of ['flip', 'gap', 'truncate'] as const) {
      for (let seed = 1; seed <= 6; seed++) {
        const victim = streams[seed % streams.length]!;
        const r = await run(capture, { maxBodySize: 256 }, (d) => damage(d, victim, seed, mode));
        const cleanSmall = await run(capture, { maxBodySize: 256 });
        expect(strip(r.entries, victim)).toEqual(strip(cleanSmall.entries, victim));
        const mine = (es: MysqlEntry[]): string => JSON.stringify(es.filter((e) => e.stream === victim).map((e) => [e.mysql_command, e.mysql_query, e.mysql_response, e.error]));
        if (mine(r.entries) !== mine(clean.entries)) changed++;
        for (const e of r.entries) {
          expect(e.protocol).toBe('mysql');
          expect(e.request?.body?.length ?? 0).toBeLessThanOrEqual(256);
          expect(e.response?.body?.length ?? 0).toBeLessThanOrEqual(256);
        }
        runs++;
      }
    }
    expect(runs).toBe(18);
    expect(changed).toBeGreaterThan(0);
  });

  test('random bytes as a whole stream: no exception', () => {
    const rand = prng(5);
    for (let i = 0; i < 200; i++) {
      const f = new Feed({ maxBodySize: 128 }, { clientDir: i % 3 === 0 ? undefined : 0 });
      for (let k = 0; k < 10; k++) f.data((k % 2) as TcpDirection, Buffer.from(Array.from({ length: Math.floor(rand() * 300) }, () => Math.floor(rand() * 256))), k);
      for (const e of f.end()) expect(e.request?.body?.length ?? 0).toBeLessThanOrEqual(128);
    }
  });
});

/**
 * The production path: every stream through the stream router with the HTTP, MySQL and MongoDB
 * protocols registered (no port hints: content alone), WebSocket behind HTTP upgrades.
 */
async function routed(capture: string, sinks: { mysql?: (e: MysqlEntry) => void; mongodb?: (e: MongodbEntry) => void; ws?: (e: WebSocketEntry) => void }): Promise<StreamRouter> {
  return routeMysqlMongodbWebSocket(capture, sinks);
}

describe('through the stream router', () => {
  test.each(CAPTURES)('%s: claimed by content alone, the same entries as fed directly', async (capture) => {
    const direct = await run(capture);
    const viaRouter: MysqlEntry[] = [];
    const router = await routed(capture, { mysql: (e) => viaRouter.push(e) });
    viaRouter.sort((a, b) => direct.tcpStream.get(a.stream)! - direct.tcpStream.get(b.stream)! || a.index - b.index);
    expect(viaRouter).toEqual(direct.entries);
    expect(router.stats().claimed).toMatchObject({ mysql: new Set(direct.entries.map((e) => e.stream)).size, http: 0, mongodb: 0 });
  });
});
