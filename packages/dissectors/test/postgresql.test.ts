import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { TcpChunk, TcpDirection, TcpEndReason } from '@kubeshark-mcp/capture';
import { GOLDEN_DIR, goldenCaptures } from '@kubeshark-mcp/testkit';
import { POSTGRESQL_PROTOCOL, PostgresqlDissector, sqlKeyword, type PostgresqlDissectorOptions, type PostgresqlEntry } from '../src/postgresql';
import type { StreamOpen, TcpDissector } from '../src/stream';
import { feedCapture } from './support/feed';
import { prng, damage } from './support/damage';

/**
 * The PostgreSQL dissector against tshark's pgsql fields for the same captures
 * (fixtures/golden/<capture>/postgresql.psv, scripts/golden-postgresql.sh), then behaviour on
 * hand-made streams, then robustness on damaged captures.
 *
 * How we compare, per tcp.stream: tshark lists every message of a frame (`pgsql.type`) with
 * the values of each field in message order. Walking those messages we derive the calls a
 * client made (SSLRequest, GSSENCRequest, StartupMessage with user and database, each Simple
 * query, and each Execute with the SQL of the Parse its portal's statement came from, named
 * statements remembered) and what the server said (CommandComplete tags in order, ErrorResponse
 * SQLSTATEs in order, DataRows). Our entries, in order, must give the same calls, the same
 * tags, the same error codes and messages, and as many rows.
 *
 * Differences: tshark does not show the server's one-byte answers to SSLRequest and
 * GSSENCRequest (not a pgsql message to it); we report them as `postgresql_encryption`, checked
 * against the bytes that follow in the test below (TLS records after `S`, a StartupMessage
 * after `N`).
 */

const CAPTURES = [
  'ndpi/pgsql.pcap',
  'suricata-verify/pgsql-simple-query-rollback.pcap',
  'zeek/postgresql_psql-aws-ssl-require.pcap',
  'zeek/postgresql_psql-create-insert-select-delete-drop.pcap',
  'zeek/postgresql_psql-login.pcap',
];
const PORT = 5432;
const SEP = '\x1f';

interface Call {
  method: string;
  query: string;
  user?: string;
  database?: string;
}

interface StreamView {
  calls: Call[];
  tags: string[];
  errors: string[];
  rows: number;
}

const newView = (): StreamView => ({ calls: [], tags: [], errors: [], rows: 0 });

function loadGolden(capture: string): Map<number, StreamView> {
  const [head, ...lines] = readFileSync(path.join(GOLDEN_DIR, capture, 'postgresql.psv'), 'utf8').split('\n');
  const cols = head!.split('|');
  const out = new Map<number, StreamView>();
  const names = new Map<number, { statements: Map<string, string>; portals: Map<string, string> }>();
  for (const l of lines) {
    if (l.trim() === '') continue;
    const f = l.split('|');
    const at = (n: string): string[] => {
      const v = f[cols.indexOf(n)] ?? '';
      return v === '' ? [] : v.split(SEP);
    };
    const stream = Number(at('tcp.stream')[0]);
    const view = out.get(stream) ?? newView();
    out.set(stream, view);
    const nm = names.get(stream) ?? { statements: new Map<string, string>(), portals: new Map<string, string>() };
    names.set(stream, nm);
    const types = at('pgsql.type');
    const queries = at('pgsql.query');
    const statements = at('pgsql.statement');
    const portals = at('pgsql.portal');
    const tags = at('pgsql.tag');
    const codes = at('pgsql.code');
    const messages = at('pgsql.message');
    const pnames = at('pgsql.parameter_name');
    const pvalues = at('pgsql.parameter_value');
    // Describe names a statement or a portal; the counts tell which (one kind per frame here).
    const describes = types.filter((t) => t === 'Describe').length;
    const fixedStatements = types.filter((t) => t === 'Parse' || t === 'Bind').length;
    const describeStatement = statements.length - fixedStatements === describes && describes > 0;
    if (describes > 0) expect([0, describes]).toContain(statements.length - fixedStatements);
    const startupParams = pnames.length - types.filter((t) => t === 'Parameter status').length;
    let [q, s, p, t, c, n] = [0, 0, 0, 0, 0, 0];
    for (const type of types) {
      switch (type) {
        case 'SSL request':
          view.calls.push({ method: 'SSL_REQUEST', query: '' });
          break;
        case 'GSS encrypt request':
          view.calls.push({ method: 'GSSENC_REQUEST', query: '' });
          break;
        case 'Cancel request':
          view.calls.push({ method: 'CANCEL', query: '' });
          break;
        case 'Startup message': {
          const params = new Map<string, string>();
          for (let k = 0; k < startupParams; k++) params.set(pnames[n + k]!, pvalues[n + k]!);
          n += startupParams;
          view.calls.push({ method: 'STARTUP', query: '', user: params.get('user'), database: params.get('database') ?? params.get('user') });
          break;
        }
        case 'Parameter status':
          n++;
          break;
        case 'Simple query':
          view.calls.push({ method: sqlKeyword(queries[q]!), query: queries[q++]! });
          break;
        case 'Parse':
          nm.statements.set(statements[s++]!, queries[q++]!);
          break;
        case 'Bind': {
          const portal = portals[p++]!;
          nm.portals.set(portal, nm.statements.get(statements[s++]!) ?? '?');
          break;
        }
        case 'Describe':
          if (describeStatement) s++;
          else p++;
          break;
        case 'Execute': {
          const sql = nm.portals.get(portals[p++]!) ?? '?';
          view.calls.push({ method: sqlKeyword(sql), query: sql });
          break;
        }
        case 'Command completion':
          view.tags.push(tags[t++]!);
          break;
        case 'Error':
          view.errors.push(`${codes[c]}: ${messages[c]}`);
          c++;
          break;
        case 'Notice':
          c++;
          break;
        case 'Data row':
          view.rows++;
          break;
        default:
          break;
      }
    }
    expect([q, s, p, t, c, n]).toEqual([queries.length, statements.length, portals.length, tags.length, codes.length, pnames.length]);
  }
  return out;
}

interface Run {
  entries: PostgresqlEntry[];
  tcpStream: Map<number, number>;
  dissector: PostgresqlDissector;
}

async function run(capture: string, options: PostgresqlDissectorOptions = {}, wrap?: (d: TcpDissector) => TcpDissector): Promise<Run> {
  const entries: PostgresqlEntry[] = [];
  const dissector = new PostgresqlDissector((e) => entries.push(e), options);
  const { tcpStream } = await feedCapture(capture, wrap ? wrap(dissector) : dissector, { accept: (s, d) => s === PORT || d === PORT });
  entries.sort((a, b) => tcpStream.get(a.stream)! - tcpStream.get(b.stream)! || a.index - b.index);
  return { entries, tcpStream, dissector };
}

const ROWS_FROM_TAG = /^(INSERT|UPDATE|DELETE|MERGE|COPY|MOVE)\b/;

function ourViews(r: Run): Map<number, StreamView> {
  const out = new Map<number, StreamView>();
  for (const e of r.entries) {
    const s = r.tcpStream.get(e.stream)!;
    const v = out.get(s) ?? newView();
    out.set(s, v);
    const call: Call = { method: e.method, query: e.postgresql_query };
    if (e.method === 'STARTUP') Object.assign(call, { user: e.postgresql_user, database: e.postgresql_database });
    v.calls.push(call);
    if (e.postgresql_command_tag !== '') v.tags.push(...e.postgresql_command_tag.split('; '));
    if (e.postgresql_error_code !== undefined) v.errors.push(`${e.postgresql_error_code}: ${e.postgresql_error_message}`);
    if (!ROWS_FROM_TAG.test(e.postgresql_command_tag)) v.rows += e.postgresql_rows;
  }
  return out;
}

/**
 * Exchanges not complete when their stream ended, as `<tcp.stream>/<method>`: in ndpi stream 3
 * psql closed the connection at the password request (it asks the user, then reconnects:
 * stream 5), so the startup never reached ReadyForQuery.
 */
const INCOMPLETE: Record<string, string[]> = { 'ndpi/pgsql.pcap': ['3/STARTUP'] };

/** tshark's names of the message types (frontend, backend). */
const FRONTEND_NAMES: Record<string, string> = { Q: 'Simple query', P: 'Parse', B: 'Bind', D: 'Describe', E: 'Execute', C: 'Close', S: 'Sync', H: 'Flush', X: 'Termination', d: 'Copy data', c: 'Copy completion', f: 'Copy failure' };
const BACKEND_NAMES: Record<string, string> = {
  R: 'Authentication request',
  S: 'Parameter status',
  K: 'Backend key data',
  Z: 'Ready for query',
  T: 'Row description',
  D: 'Data row',
  C: 'Command completion',
  E: 'Error',
  N: 'Notice',
  '1': 'Parse completion',
  '2': 'Bind completion',
  '3': 'Close completion',
  n: 'No data',
  t: 'Parameter description',
  I: 'Empty query',
  s: 'Portal suspended',
};
/**
 * Messages our entries do not keep: Sync, Flush and Termination carry nothing; password and
 * SASL messages are secrets; NoticeResponse is asynchronous.
 */
const NOT_KEPT = new Set(['Sync', 'Flush', 'Termination', 'Password message', 'SASLInitialResponse message', 'SASLResponse message', 'Notice']);
const UNTYPED: Record<string, string> = { STARTUP: 'Startup message', SSL_REQUEST: 'SSL request', GSSENC_REQUEST: 'GSS encrypt request', CANCEL: 'Cancel request' };

/** The message types in kept bytes: type byte and length, back to back. */
function typesIn(body: Uint8Array | null | undefined, names: Record<string, string>): string[] {
  const out: string[] = [];
  const b = Buffer.from(body ?? new Uint8Array(0));
  for (let i = 0; i + 5 <= b.length; i += 1 + b.readUInt32BE(i + 1)) out.push(names[String.fromCharCode(b[i]!)] ?? `?${b[i]}`);
  return out;
}

/** tshark's message types per `<tcp.stream>/<client|server>`, less those not kept. */
function goldenTypes(capture: string): Map<string, string[]> {
  const [head, ...lines] = readFileSync(path.join(GOLDEN_DIR, capture, 'postgresql.psv'), 'utf8').split('\n');
  const cols = head!.split('|');
  const out = new Map<string, string[]>();
  for (const l of lines) {
    if (l.trim() === '') continue;
    const f = l.split('|');
    const side = f[cols.indexOf('tcp.srcport')] === String(PORT) ? 'server' : 'client';
    const key = `${f[cols.indexOf('tcp.stream')]}/${side}`;
    out.set(key, [...(out.get(key) ?? []), ...f[cols.indexOf('pgsql.type')]!.split(SEP).filter((t) => !NOT_KEPT.has(t))]);
  }
  return out;
}

describe.each(CAPTURES)('%s against tshark', (capture) => {
  let r: Run;
  beforeAll(async () => {
    r = await run(capture);
  });

  test('same calls, command tags, error codes and rows per tcp.stream', () => {
    const expected = loadGolden(capture);
    const ours = ourViews(r);
    // Streams tshark shows nothing for are streams we give no entry to either.
    expect([...ours.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const [s, v] of expected) expect([s, ours.get(s)]).toEqual([s, v]);
  });

  test('every exchange is complete, except those whose connection ended first', () => {
    const incomplete = r.entries.filter((e) => e.error !== undefined);
    expect(incomplete.map((e) => `${r.tcpStream.get(e.stream)}/${e.method}`)).toEqual(INCOMPLETE[capture] ?? []);
    expect(incomplete.every((e) => e.error === 'pair-not-found')).toBe(true);
  });

  test('the kept bytes hold the same messages as tshark shows, in order', () => {
    const ours = new Map<string, string[]>();
    const add = (key: string, types: string[]): void => {
      if (types.length > 0) ours.set(key, [...(ours.get(key) ?? []), ...types]);
    };
    for (const e of r.entries) {
      const s = r.tcpStream.get(e.stream)!;
      const untyped = UNTYPED[e.method];
      add(`${s}/client`, untyped ? [untyped] : typesIn(e.request?.body, FRONTEND_NAMES));
      // The one-byte answers to SSLRequest and GSSENCRequest are not pgsql messages to tshark.
      if (e.postgresql_encryption === undefined) add(`${s}/server`, typesIn(e.response?.body, BACKEND_NAMES));
      expect([e.request?.truncated, e.response?.truncated ?? false]).toEqual([false, false]);
    }
    expect(Object.fromEntries(ours)).toEqual(Object.fromEntries(goldenTypes(capture)));
  });

  test('entry fields', () => {
    // Indexes count from 0 per stream, in order.
    const seen = new Map<number, number>();
    for (const e of r.entries) {
      expect(e.index).toBe(seen.get(e.stream) ?? 0);
      seen.set(e.stream, e.index + 1);
    }
    for (const e of r.entries) {
      expect(e).toMatchObject({ protocol: 'postgresql', status_code: 0, path: e.postgresql_database ?? '' });
      expect(e.failure).toBe(e.postgresql_error_code === undefined ? undefined : `SQLSTATE ${e.postgresql_error_code}: ${e.postgresql_error_message}`);
      if (e.postgresql_query !== '') expect(e.method).toBe(sqlKeyword(e.postgresql_query));
      expect(e.request).not.toBeNull();
    }
  });
});

describe('what the golden captures exercise', () => {
  test('SSL: accepted means the rest is TLS (one entry), refused continues in clear', async () => {
    const aws = await run('zeek/postgresql_psql-aws-ssl-require.pcap');
    expect(aws.entries.map((e) => [e.method, e.postgresql_encryption, e.response!.body_size, e.error])).toEqual([['SSL_REQUEST', 'accepted', 1, undefined]]);
    expect(aws.dissector.stats().encrypted).toBe(1);
    const login = await run('zeek/postgresql_psql-login.pcap');
    expect(login.entries.map((e) => [e.method, e.postgresql_encryption, e.postgresql_user, e.postgresql_database, e.postgresql_application_name, e.error])).toEqual([
      // Emitted before the StartupMessage: the connection's user and database are not known yet.
      ['SSL_REQUEST', 'refused', undefined, undefined, undefined, undefined],
      ['STARTUP', undefined, 'zeek', 'zeek', 'psql', undefined],
    ]);
  });

  test('ndpi: GSSAPI encryption accepted, extended queries with named statements, two Executes in a batch', async () => {
    const { entries, tcpStream } = await run('ndpi/pgsql.pcap');
    const s = (n: number): PostgresqlEntry[] => entries.filter((e) => tcpStream.get(e.stream) === n);
    expect(s(2).map((e) => [e.method, e.postgresql_encryption])).toEqual([['GSSENC_REQUEST', 'accepted']]);
    expect(s(0).map((e) => [e.method, e.postgresql_command_tag, e.postgresql_rows, e.error])).toEqual([
      ['STARTUP', '', 0, undefined],
      ['BEGIN', 'BEGIN', 0, undefined],
      ['SELECT', 'SELECT', 1, undefined],
      ['COMMIT', 'COMMIT', 0, undefined],
      ['SELECT', 'SELECT', 0, undefined],
      ['SELECT', 'SELECT', 0, undefined],
    ]);
    // The last Execute reuses prepared statement "4" without a Parse.
    expect(s(0)[5]!.postgresql_query).toBe(s(0)[4]!.postgresql_query);
    expect(s(0)[4]!.postgresql_query.startsWith('select u.id, u.address')).toBe(true);
  });

  test('rollback capture: errors fail their query, the transaction-aborted ones too', async () => {
    const { entries } = await run('suricata-verify/pgsql-simple-query-rollback.pcap');
    const failed = entries.filter((e) => e.failure !== undefined);
    expect(failed.map((e) => e.failure)).toEqual([
      'SQLSTATE 22012: division by zero',
      'SQLSTATE 25P02: current transaction is aborted, commands ignored until end of transaction block',
      'SQLSTATE 25P02: current transaction is aborted, commands ignored until end of transaction block',
      'SQLSTATE 25P02: current transaction is aborted, commands ignored until end of transaction block',
      'SQLSTATE 22012: division by zero',
    ]);
    expect(failed[0]).toMatchObject({ method: 'SELECT', postgresql_query: 'SELECT 1/0;', postgresql_error_severity: 'ERROR', postgresql_database: 'Test', postgresql_user: 'ju-Test' });
    // The same SELECT fails inside the aborted transaction, then returns 8 rows after it.
    expect(entries.filter((e) => e.postgresql_query === 'SELECT * FROM new_table;').map((e) => [e.postgresql_command_tag, e.postgresql_rows, e.postgresql_error_code])).toEqual([
      ['', 0, '25P02'],
      ['SELECT 8', 8, undefined],
    ]);
    expect(entries.every((e) => e.error === undefined && e.elapsed_time >= 0)).toBe(true);
  });
});

/** Feeds hand-made bytes as the reassembler would; each `data` call is one packet at time `t` (ms). */
class Feed {
  readonly entries: PostgresqlEntry[] = [];
  readonly d: PostgresqlDissector;
  private readonly offsets: [number, number] = [0, 0];
  private ended = 0;

  constructor(
    options: PostgresqlDissectorOptions = {},
    open: StreamOpen = { clientDir: 0 },
    readonly stream = 4,
  ) {
    this.d = new PostgresqlDissector((e) => this.entries.push(e), options);
    this.d.open(stream, open);
  }

  data(dir: TcpDirection, bytes: Uint8Array, t: number): this {
    const sec = Math.floor(t / 1000);
    const nsec = (t % 1000) * 1e6;
    const wrapped = Buffer.concat([Buffer.from('xx'), bytes, Buffer.from('yy')]);
    const chunk: TcpChunk = { stream: this.stream, dir, offset: this.offsets[dir], buf: wrapped, start: 2, length: bytes.length, firstSec: sec, firstNsec: nsec, lastSec: sec, lastNsec: nsec, midStream: false };
    this.d.onData(chunk);
    wrapped.fill(0);
    this.offsets[dir] += bytes.length;
    return this;
  }

  /** Like `data` without copying: the bytes are passed as they are (no garbage to skew memory measurements). */
  raw(dir: TcpDirection, bytes: Uint8Array, t: number): this {
    const sec = Math.floor(t / 1000);
    this.d.onData({ stream: this.stream, dir, offset: this.offsets[dir], buf: bytes, start: 0, length: bytes.length, firstSec: sec, firstNsec: 0, lastSec: sec, lastNsec: 0, midStream: false });
    this.offsets[dir] += bytes.length;
    return this;
  }

  gap(dir: TcpDirection, length: number, t: number): this {
    this.d.onGap({ stream: this.stream, dir, offset: this.offsets[dir], length, reason: 'acked', sec: Math.floor(t / 1000), nsec: 0 });
    this.offsets[dir] += length;
    return this;
  }

  end(reason: TcpEndReason = 'fin'): PostgresqlEntry[] {
    for (const dir of [0, 1] as const) this.d.onEnd({ stream: this.stream, dir, offset: this.offsets[dir], reason, sec: 0, nsec: 0, closed: ++this.ended === 2 });
    return this.entries;
  }
}

const z = (s: string): Buffer => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);
const i32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const i16 = (n: number): Buffer => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const msg = (type: string, ...parts: Buffer[]): Buffer => {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from(type, 'latin1'), i32(body.length + 4), body]);
};
const untyped = (...parts: Buffer[]): Buffer => {
  const body = Buffer.concat(parts);
  return Buffer.concat([i32(body.length + 4), body]);
};
const STARTUP = untyped(i32(0x30000), z('user'), z('alice'), z('database'), z('shop'), z('application_name'), z('app'), Buffer.from([0]));
const SSL = untyped(i32(80877103));
const AUTH_OK = msg('R', i32(0));
const READY = msg('Z', Buffer.from('I'));
const HELLO = Buffer.concat([AUTH_OK, msg('S', z('server_version'), z('16.0')), msg('K', i32(1), i32(2)), READY]);
const Q = (sql: string): Buffer => msg('Q', z(sql));
const C = (tag: string): Buffer => msg('C', z(tag));
const T1 = msg('T', i16(1), z('id'), i32(0), i16(0), i32(23), i16(4), i32(-1), i16(0));
const D1 = (v: string): Buffer => msg('D', i16(1), i32(Buffer.byteLength(v)), Buffer.from(v));
const ERR = (code: string, m: string): Buffer => msg('E', z('SERROR'), z('VERROR'), z(`C${code}`), z(`M${m}`), Buffer.from([0]));
const PARSE = (name: string, sql: string): Buffer => msg('P', z(name), z(sql), i16(0));
const BIND = (portal: string, stmt: string): Buffer => msg('B', z(portal), z(stmt), i16(0), i16(0), i16(0));
const DESCRIBE_P = (portal: string): Buffer => msg('D', Buffer.from('P'), z(portal));
const EXECUTE = (portal: string): Buffer => msg('E', z(portal), i32(0));
const SYNC = msg('S');
const summary = (es: PostgresqlEntry[]): unknown[] => es.map((e) => [e.method, e.postgresql_query, e.postgresql_command_tag, e.postgresql_rows, e.failure, e.error]);

describe('behaviour on hand-made streams', () => {
  const client = Buffer.concat([STARTUP, Q('SELECT id FROM t'), Q('INSERT INTO t VALUES (1); DELETE FROM t'), Q('SELEC oops')]);
  const server = Buffer.concat([HELLO, T1, D1('1'), D1('2'), C('SELECT 2'), READY, C('INSERT 0 1'), C('DELETE 3'), READY, msg('N', z('SNOTICE'), Buffer.from([0])), ERR('42601', 'syntax error at or near "SELEC"'), READY]);
  const expected = [
    ['STARTUP', '', '', 0, undefined, undefined],
    ['SELECT', 'SELECT id FROM t', 'SELECT 2', 2, undefined, undefined],
    ['INSERT', 'INSERT INTO t VALUES (1); DELETE FROM t', 'INSERT 0 1; DELETE 3', 3, undefined, undefined],
    ['SELEC', 'SELEC oops', '', 0, 'SQLSTATE 42601: syntax error at or near "SELEC"', undefined],
  ];

  test('startup and simple queries, split at every byte boundary', () => {
    const whole = new Feed().data(0, client, 1).data(1, server, 2).end();
    const bodies = (es: PostgresqlEntry[]): string[] => es.map((e) => `${Buffer.from(e.request!.body!).toString('hex')}/${Buffer.from(e.response!.body!).toString('hex')}`);
    // The kept bytes of the exchanges, back to back, are the two streams (less the NoticeResponse, which is asynchronous).
    expect(whole.map((e) => Buffer.from(e.request!.body!).toString('hex')).join('')).toBe(client.toString('hex'));
    expect(whole.map((e) => Buffer.from(e.response!.body!).toString('hex')).join('')).toBe(server.toString('hex').replace(msg('N', z('SNOTICE'), Buffer.from([0])).toString('hex'), ''));
    expect(summary(whole)).toEqual(expected);
    // Client bytes at 1 ms, server bytes at 2 ms: timestamps in µs, elapsed first byte to first byte.
    expect(whole.map((e) => [e.timestamp, e.elapsed_time])).toEqual(whole.map(() => [1000, 1000]));
    expect(whole[0]).toMatchObject({ postgresql_user: 'alice', postgresql_database: 'shop', postgresql_application_name: 'app', path: 'shop', url: 'shop' });
    expect(whole[3]).toMatchObject({ postgresql_error_code: '42601', postgresql_error_severity: 'ERROR' });
    for (let cut = 1; cut < client.length; cut += 1) {
      const f = new Feed().data(0, client.subarray(0, cut), 1).data(0, client.subarray(cut), 1);
      f.data(1, server.subarray(0, cut % server.length), 2).data(1, server.subarray(cut % server.length), 2);
      const es = f.end();
      expect(summary(es)).toEqual(expected);
      expect(bodies(es)).toEqual(bodies(whole));
    }
    const bytewise = new Feed();
    for (const b of client) bytewise.data(0, Buffer.from([b]), 1);
    for (const b of server) bytewise.data(1, Buffer.from([b]), 2);
    const es = bytewise.end();
    expect(summary(es)).toEqual(expected);
    expect(bodies(es)).toEqual(bodies(whole));
  });

  test('SSLRequest refused then startup in clear; accepted stops at TLS', () => {
    const refused = new Feed().data(0, SSL, 1).data(1, Buffer.from('N'), 2).data(0, STARTUP, 3).data(1, HELLO, 4).end();
    expect(refused.map((e) => [e.method, e.postgresql_encryption, e.error])).toEqual([
      ['SSL_REQUEST', 'refused', undefined],
      ['STARTUP', undefined, undefined],
    ]);
    const tls = Buffer.from('16030100a5010000a10303', 'hex');
    const accepted = new Feed().data(0, SSL, 1).data(1, Buffer.from('S'), 2).data(0, tls, 3).data(1, tls, 4).data(0, Q('SELECT 1'), 5).end();
    expect(accepted.map((e) => [e.method, e.postgresql_encryption, e.error])).toEqual([['SSL_REQUEST', 'accepted', undefined]]);
  });

  test('extended query pipeline: one entry per Execute, SQL from its statement, an error fails the rest of its batch', () => {
    const f = new Feed();
    f.data(0, STARTUP, 1).data(1, HELLO, 2);
    const c = Buffer.concat([
      PARSE('s1', 'SELECT id FROM t WHERE id = $1'),
      BIND('', 's1'),
      DESCRIBE_P(''),
      EXECUTE(''),
      BIND('p2', 's1'),
      EXECUTE('p2'),
      SYNC,
      PARSE('', 'UPDATE t SET x = 1'),
      BIND('', ''),
      EXECUTE(''),
      PARSE('', 'SELECT nope FROM t'),
      BIND('', ''),
      EXECUTE(''),
      SYNC,
      PARSE('', 'SELEKT'),
      SYNC,
    ]);
    const s = Buffer.concat([
      msg('1'),
      msg('2'),
      T1,
      D1('7'),
      C('SELECT 1'),
      msg('2'),
      D1('8'),
      C('SELECT 1'),
      READY,
      msg('1'),
      msg('2'),
      C('UPDATE 4'),
      msg('1'),
      msg('2'),
      ERR('42703', 'column "nope" does not exist'),
      msg('Z', Buffer.from('E')),
      ERR('42601', 'syntax error at or near "SELEKT"'),
      READY,
    ]);
    f.data(0, c, 3).data(1, s, 4);
    const es = f.end();
    expect(summary(es.slice(1))).toEqual([
      ['SELECT', 'SELECT id FROM t WHERE id = $1', 'SELECT 1', 1, undefined, undefined],
      ['SELECT', 'SELECT id FROM t WHERE id = $1', 'SELECT 1', 1, undefined, undefined],
      ['UPDATE', 'UPDATE t SET x = 1', 'UPDATE 4', 4, undefined, undefined],
      ['SELECT', 'SELECT nope FROM t', '', 0, 'SQLSTATE 42703: column "nope" does not exist', undefined],
      ['SELEKT', 'SELEKT', '', 0, 'SQLSTATE 42601: syntax error at or near "SELEKT"', undefined],
    ]);
    // The first Execute's request carries its Parse, Bind and Describe.
    expect(es[1]!.request!.body_size).toBe(PARSE('s1', 'SELECT id FROM t WHERE id = $1').length + BIND('', 's1').length + DESCRIBE_P('').length + EXECUTE('').length);
    expect(es[2]!.request!.body_size).toBe(BIND('p2', 's1').length + EXECUTE('p2').length);
    // Answers: from the Parse's completion to the Execute's; the batch's last Execute, and a
    // batch that failed, end with the ReadyForQuery.
    expect(es.slice(1).map((e) => typesIn(e.response!.body, BACKEND_NAMES))).toEqual([
      ['Parse completion', 'Bind completion', 'Row description', 'Data row', 'Command completion'],
      ['Bind completion', 'Data row', 'Command completion', 'Ready for query'],
      ['Parse completion', 'Bind completion', 'Command completion'],
      ['Parse completion', 'Bind completion', 'Error', 'Ready for query'],
      ['Error', 'Ready for query'],
    ]);
  });

  test('COPY in and out are skipped; the query completes', () => {
    const f = new Feed();
    f.data(0, Buffer.concat([STARTUP, Q('COPY t FROM STDIN')]), 1).data(1, Buffer.concat([HELLO, msg('G', Buffer.from([0]), i16(0))]), 2);
    f.data(0, Buffer.concat([msg('d', Buffer.from('1\n2\n')), msg('c')]), 3).data(1, Buffer.concat([C('COPY 2'), READY]), 4);
    f.data(0, Q('COPY t TO STDOUT'), 5).data(1, Buffer.concat([msg('H', Buffer.from([0]), i16(0)), msg('d', Buffer.from('1\n')), msg('c'), C('COPY 1'), READY]), 6);
    expect(summary(f.end()).slice(1)).toEqual([
      ['COPY', 'COPY t FROM STDIN', 'COPY 2', 2, undefined, undefined],
      ['COPY', 'COPY t TO STDOUT', 'COPY 1', 1, undefined, undefined],
    ]);
  });

  test('a FunctionCall is answered by FunctionCallResponse and ReadyForQuery', () => {
    const f = new Feed().data(0, STARTUP, 1).data(1, HELLO, 2);
    f.data(0, msg('F', i32(952), i16(0), i16(1), i32(4), i32(7), i16(0)), 3).data(1, Buffer.concat([msg('V', i32(4), i32(1)), READY]), 4);
    f.data(0, Q('SELECT 1'), 5).data(1, Buffer.concat([C('SELECT 0'), READY]), 6);
    expect(summary(f.end()).slice(1)).toEqual([
      ['FUNCTION_CALL', '', '', 0, undefined, undefined],
      ['SELECT', 'SELECT 1', 'SELECT 0', 0, undefined, undefined],
    ]);
  });

  test('a failed login: the startup entry carries the FATAL error', () => {
    const f = new Feed().data(0, STARTUP, 1).data(1, msg('R', i32(3)), 2).data(0, msg('p', z('secret')), 3).data(1, ERR('28P01', 'password authentication failed for user "alice"'), 4);
    const es = f.end();
    expect(summary(es)).toEqual([['STARTUP', '', '', 0, 'SQLSTATE 28P01: password authentication failed for user "alice"', undefined]]);
    // The password is not kept.
    expect(Buffer.from(es[0]!.request!.body!).includes('secret')).toBe(false);
  });

  test('bounded: a 1 GB DataRow claim allocates nothing; long SQL is cut', () => {
    const f = new Feed({ maxBodySize: 100, maxQueryLength: 50 });
    f.data(0, Buffer.concat([STARTUP, Q(`SELECT '${'x'.repeat(1000)}'`)]), 1).data(1, Buffer.concat([HELLO, T1, Buffer.from('D'), i32(0x3fffffff)]), 2);
    const before = process.memoryUsage().arrayBuffers;
    const block = Buffer.alloc(1 << 20, 0x61);
    for (let k = 0; k < 50; k++) f.raw(1, block, 3);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(4 << 20);
    const es = f.end();
    expect(es[1]).toMatchObject({ method: 'SELECT', error: 'dissection', response: { truncated: true, body: expect.any(Buffer) as unknown } });
    expect(es[1]!.postgresql_query).toHaveLength(51);
    expect(es[1]!.response!.body!.length).toBe(100);
  });

  test('pending queries are bounded: past 1024 the oldest is given up, past 4 MiB bodies stop being kept', () => {
    const f = new Feed().data(0, STARTUP, 1).data(1, HELLO, 2);
    const sql = (i: number): string => `SELECT ${i}, '${'x'.repeat(10000)}'`;
    for (let i = 0; i < 3000; i++) f.data(0, Q(sql(i)), 3);
    expect(f.entries).toHaveLength(1 + 3000 - 1024);
    expect(f.entries.slice(1).every((e) => e.error === 'pair-not-found')).toBe(true);
    const es = f.end();
    expect(es.slice(1).map((e) => e.postgresql_query)).toEqual(Array.from({ length: 3000 }, (_, i) => sql(i)));
    const waiting = es.slice(-1024);
    expect(waiting.reduce((n, e) => n + (e.request!.body?.length ?? 0), 0)).toBeLessThanOrEqual(4 * 1024 * 1024);
    expect(waiting.some((e) => e.request!.truncated)).toBe(true);
  });

  test('a gap in the server direction: the waiting query is damaged, parsing resumes after the next ReadyForQuery', () => {
    const f = new Feed();
    f.data(0, STARTUP, 1).data(1, HELLO, 2);
    f.data(0, Q('SELECT 1'), 3).data(1, Buffer.concat([T1, D1('1')]), 4).gap(1, 20, 5).data(1, Buffer.concat([D1('2'), C('SELECT 2'), READY]), 6);
    f.data(0, Q('SELECT 2'), 7).data(1, Buffer.concat([T1, D1('2'), C('SELECT 1'), READY]), 8);
    expect(summary(f.end()).slice(1)).toEqual([
      ['SELECT', 'SELECT 1', '', 1, undefined, 'dissection'],
      ['SELECT', 'SELECT 2', 'SELECT 1', 1, undefined, undefined],
    ]);
  });

  test('a gap in the client direction: answers to lost queries are skipped by time', () => {
    const f = new Feed();
    f.data(0, STARTUP, 1).data(1, HELLO, 2);
    f.gap(0, 30, 3).data(1, Buffer.concat([C('DELETE 1'), READY]), 4);
    f.data(0, Q('SELECT 2'), 5).data(1, Buffer.concat([T1, D1('2'), C('SELECT 1'), READY]), 6);
    expect(summary(f.end()).slice(1)).toEqual([['SELECT', 'SELECT 2', 'SELECT 1', 1, undefined, undefined]]);
  });

  test('joined mid-stream: each direction resumes at a chunk of whole messages', () => {
    const f = new Feed({}, { clientDir: undefined });
    const mid = (dir: TcpDirection, bytes: Buffer, t: number): void =>
      f.d.onData({ stream: f.stream, dir, offset: 1000 + t, buf: bytes, start: 0, length: bytes.length, firstSec: 0, firstNsec: t * 1e6, lastSec: 0, lastNsec: t * 1e6, midStream: true });
    mid(1, Buffer.concat([D1('9'), C('SELECT 7'), READY]), 1); // the end of an answer to a query before the capture
    mid(0, Q('SELECT 1'), 2);
    mid(1, Buffer.concat([T1, D1('1'), C('SELECT 1'), READY]), 3);
    f.d.onGap({ stream: f.stream, dir: 0, offset: 1004, length: 3, reason: 'acked', sec: 0, nsec: 4e6 });
    mid(0, Q('SELECT 2'), 5);
    mid(1, Buffer.concat([T1, D1('2')]), 6);
    mid(1, Buffer.concat([C('SELECT 1'), READY]), 7);
    expect(summary(f.end())).toEqual([
      ['SELECT', 'SELECT 1', 'SELECT 1', 1, undefined, undefined],
      ['SELECT', 'SELECT 2', 'SELECT 1', 1, undefined, undefined],
    ]);
  });

  test('a query never answered is pair-not-found; a CancelRequest is an entry of its own', () => {
    const f = new Feed().data(0, Buffer.concat([STARTUP]), 1).data(1, HELLO, 2).data(0, Q('SELECT pg_sleep(10)'), 3);
    expect(summary(f.end()).slice(1)).toEqual([['SELECT', 'SELECT pg_sleep(10)', '', 0, undefined, 'pair-not-found']]);
    const g = new Feed().data(0, untyped(i32(80877102), i32(1234), i32(5678)), 1).end();
    expect(summary(g)).toEqual([['CANCEL', '', '', 0, undefined, undefined]]);
  });

  test('without the handshake the client is found by content; detection rejects other protocols', () => {
    const f = new Feed({}, { clientDir: undefined });
    f.data(1, STARTUP, 1).data(0, HELLO, 2);
    expect(f.end().map((e) => [e.method, e.postgresql_user])).toEqual([['STARTUP', 'alice']]);
    const d = POSTGRESQL_PROTOCOL.detect;
    expect([d(STARTUP, true), d(SSL, true), d(SSL, undefined), d(HELLO, false), d(Buffer.from('N'), false), d(Buffer.concat([Buffer.from('S'), Buffer.from('160303', 'hex')]), false)]).toEqual(['yes', 'yes', 'yes', 'yes', 'more', 'yes']);
    expect([d(STARTUP.subarray(0, 5), true), d(Buffer.from([0]), undefined)]).toEqual(['more', 'more']);
    const others = [
      'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
      'HTTP/1.1 200 OK\r\n\r\n',
      '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03',
      '*1\r\n$4\r\nPING\r\n',
      '+OK\r\n',
      'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
      'AMQP\x00\x00\x09\x01',
      '\x00\x00\x00\x2a\x00\x12\x00\x03\x00\x00\x00\x01',
      'J\x00\x00\x00\x0a5.7.33\x00',
      // A Kafka Metadata v0 request: api key 3, version 0 reads as protocol 3.0.
      '\x00\x00\x00\x14\x00\x03\x00\x00\x00\x00\x00\x07\x00\x06client\x00\x00\x00\x00',
      'SSH-2.0-OpenSSH\r\n',
    ];
    for (const o of others) for (const dir of [true, false, undefined]) expect([o, d(Buffer.from(o, 'latin1'), dir)]).toEqual([o, 'no']);
  });
});

/** The first bytes (up to 4 KiB) each direction of each TCP stream of a capture sent, and who sent them. */
async function firstBytes(capture: string, port?: number): Promise<{ bytes: Buffer; fromClient: boolean | undefined; key: string }[]> {
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
      if (o.size >= 4096 || c.offset !== o.size) return; // contiguous from the first byte only
      o.parts.push(Buffer.from(c.buf.subarray(c.start, c.start + Math.min(c.length, 4096 - o.size))));
      o.size += Math.min(c.length, 4096 - o.size);
    },
  };
  await feedCapture(capture, rec, port === undefined ? {} : { accept: (s, d) => s === port || d === port });
  return [...out].map(([key, o]) => ({ key, bytes: Buffer.concat(o.parts), fromClient: o.fromClient }));
}

/** The verdicts the router would see as the bytes arrive: every prefix up to 64 bytes, then the whole. */
function verdicts(bytes: Buffer, fromClient: boolean | undefined): Set<string> {
  const seen = new Set<string>();
  for (let n = 1; n <= Math.min(64, bytes.length); n++) seen.add(POSTGRESQL_PROTOCOL.detect(bytes.subarray(0, n), fromClient));
  seen.add(POSTGRESQL_PROTOCOL.detect(bytes, fromClient));
  return seen;
}

describe('detection on every golden capture', () => {
  const others = goldenCaptures().filter((c) => !(c.includes('pgsql') || c.startsWith('zeek/postgresql_')));
  test.each(CAPTURES)('%s: every direction is claimed, on its first bytes', async (capture) => {
    const firsts = await firstBytes(capture, PORT);
    expect(firsts.length).toBeGreaterThan(0);
    for (const { key, bytes, fromClient } of firsts) {
      // A server that only answered an SSLRequest or GSSENCRequest with one byte says no more.
      const expected = bytes.length === 1 ? 'more' : 'yes';
      for (const dir of new Set([fromClient, undefined])) expect([key, dir, POSTGRESQL_PROTOCOL.detect(bytes, dir)]).toEqual([key, dir, expected]);
    }
  });

  test.each(others)('%s: no stream is claimed', async (capture) => {
    for (const { key, bytes, fromClient } of await firstBytes(capture)) {
      for (const dir of new Set([fromClient, undefined])) expect([key, dir, verdicts(bytes, dir).has('yes')]).toEqual([key, dir, false]);
    }
  });
});

describe('random input', () => {
  test('real messages cut, spliced and corrupted at random, both directions: no exception, bounded entries', () => {
    const clientParts = [STARTUP, SSL, Q('SELECT 1'), PARSE('', 'SELECT 2'), PARSE('s', 'SELECT 3'), BIND('', ''), BIND('p', 's'), DESCRIBE_P(''), EXECUTE(''), EXECUTE('p'), SYNC, msg('d', Buffer.from('x')), msg('c')];
    const serverParts = [HELLO, Buffer.from('N'), Buffer.from('S'), T1, D1('1'), C('SELECT 1'), READY, ERR('42601', 'bad'), msg('1'), msg('2'), msg('n'), msg('G', Buffer.from([0]), i16(0))];
    let entries = 0;
    for (let seed = 1; seed <= 100; seed++) {
      const rand = prng(seed);
      const out: PostgresqlEntry[] = [];
      const d = new PostgresqlDissector((e) => out.push(e), { maxBodySize: 1000 });
      d.open(1, { clientDir: rand() < 0.7 ? 0 : undefined });
      const off = [0, 0];
      for (let k = 0; k < 40; k++) {
        const dir: TcpDirection = rand() < 0.5 ? 0 : 1;
        const parts = dir === 0 ? clientParts : serverParts;
        const b = Buffer.from(parts[Math.floor(rand() * parts.length)]!);
        if (rand() < 0.2) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
        const n = rand() < 0.2 ? Math.floor(rand() * b.length) : b.length;
        if (rand() < 0.05) d.onGap({ stream: 1, dir, offset: off[dir]!, length: 10, reason: 'acked', sec: k, nsec: 0 });
        else d.onData({ stream: 1, dir, offset: off[dir]!, buf: b, start: 0, length: n, firstSec: k, firstNsec: 0, lastSec: k, lastNsec: 0, midStream: false });
        off[dir] = off[dir]! + (n || 10);
      }
      d.flush();
      for (const e of out) expect((e.request?.body?.length ?? 0) <= 1000 && (e.response?.body?.length ?? 0) <= 1000).toBe(true);
      entries += out.length;
    }
    expect(entries).toBeGreaterThan(100);
  });
});



describe.each(CAPTURES)('%s damaged', (capture) => {
  test('truncated, flipped and holed streams: no exception, other streams unchanged', async () => {
    const clean = await run(capture);
    const streams = [...new Set(clean.entries.map((e) => e.stream))];
    const strip = (es: PostgresqlEntry[], s: number): unknown[] => es.filter((e) => e.stream !== s);
    let changed = 0;
    let runs = 0;
    for (const mode of ['flip', 'gap', 'truncate'] as const) {
      for (let seed = 1; seed <= 4; seed++) {
        const victim = streams[seed % streams.length]!;
        const r = await run(capture, {}, (d) => damage(d, victim, seed, mode));
        expect(strip(r.entries, victim)).toEqual(strip(clean.entries, victim));
        for (const e of r.entries) {
          expect(e.protocol).toBe('postgresql');
          expect((e.request?.body?.length ?? 0) + (e.response?.body?.length ?? 0)).toBeLessThanOrEqual(2 * 64 * 1024);
        }
        const mine = (es: PostgresqlEntry[]): string => JSON.stringify(es.filter((e) => e.stream === victim).map((e) => summary([e])));
        if (mine(r.entries) !== mine(clean.entries)) changed++;
        runs++;
      }
    }
    expect(runs).toBe(12);
    // The damage reached the dissector: the victim's entries differ in some runs.
    expect(changed).toBeGreaterThan(0);
  });
});
