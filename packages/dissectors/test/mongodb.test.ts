import { readFileSync } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import type { TcpChunk, TcpDirection } from '@kubeshark-mcp/capture';
import { GOLDEN_DIR, goldenCaptures } from '@kubeshark-mcp/testkit';
import { bsonToJson, readBsonDocument, type BsonDoc } from '../src/bson';
import { MONGODB_OPCODES, MONGODB_PROTOCOL, MongodbDissector, type MongodbDissectorOptions, type MongodbEntry } from '../src/mongodb';
import type { StreamOpen, TcpDissector } from '../src/stream';
import { feedCapture } from './support/feed';
import { type MysqlEntry } from '../src/mysql';
import { type StreamRouter } from '../src/router';
import { type WebSocketEntry } from '../src/websocket';
import { prng, damage } from './support/damage';
import { routeMysqlMongodbWebSocket } from './support/feed';

/**
 * The MongoDB dissector against tshark's mongo fields (fixtures/golden/<capture>/mongodb.psv,
 * scripts/golden-mongodb.sh), then behaviour on hand-made streams, detection and robustness.
 *
 * How we compare, per tcp.stream in order: each message's opcode, length, requestID and
 * responseTo, the namespace of legacy ops (tshark's full_collection_name: our database plus
 * `.$cmd` for commands, `.collection` otherwise), the command name, and every BSON element
 * name in document order (tshark's mongo.element.name list) against the element names our
 * BSON reader finds in the message we keep.
 *
 * The only capture with MongoDB (ndpi/mongodb.pcap) holds five client requests (OP_QUERY
 * handshakes: isMaster, getnonce) and no reply; OP_MSG, replies, compression and errors are
 * covered by the hand-made streams below. Deliberate difference: none in what tshark shows;
 * tshark 4.0 needs `-d tcp.port==27017,mongo` (see the script), we recognise the content.
 */

const CAPTURES = ['ndpi/mongodb.pcap'];

interface Msg {
  stream: number;
  /** Capture time of the message's frame, µs. */
  timestamp: number;
  opcode: string;
  length: number;
  requestId: number;
  responseTo: number;
  namespace: string;
  elements: string[];
}

/** `1216281025.136434000` -> microseconds (exact: the integer part and the fraction are read apart). */
function epochUs(s: string): number {
  const [i, f = ''] = s.split('.');
  return Number(i) * 1e6 + Number(f.padEnd(9, '0').slice(0, 6));
}

function loadGolden(capture: string): Msg[] {
  const [head, ...lines] = readFileSync(path.join(GOLDEN_DIR, capture, 'mongodb.psv'), 'utf8').split('\n');
  const cols = head!.split('|');
  return lines
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const f = l.split('|');
      const at = (n: string): string => f[cols.indexOf(n)] ?? '';
      return {
        stream: Number(at('tcp.stream')),
        timestamp: epochUs(at('frame.time_epoch')),
        opcode: MONGODB_OPCODES[Number(at('mongo.opcode'))]!,
        length: Number(at('mongo.message_length')),
        requestId: Number(at('mongo.request_id')),
        responseTo: Number(at('mongo.response_to')),
        namespace: at('mongo.full_collection_name'),
        elements: at('mongo.element.name') === '' ? [] : at('mongo.element.name').split(';'),
      };
    });
}

/** Element names of a document tree, depth first, as tshark lists them. */
function names(doc: BsonDoc): string[] {
  const out: string[] = [];
  for (const [k, v] of doc.entries) {
    out.push(k);
    if (v.t === 'doc' || v.t === 'array') out.push(...names(v.v));
  }
  return out;
}

interface Run {
  entries: MongodbEntry[];
  tcpStream: Map<number, number>;
}

async function run(capture: string, options: MongodbDissectorOptions = {}, wrap?: (d: TcpDissector) => TcpDissector): Promise<Run> {
  const entries: MongodbEntry[] = [];
  const dissector = new MongodbDissector((e) => entries.push(e), options);
  const { tcpStream } = await feedCapture(capture, wrap ? wrap(dissector) : dissector);
  entries.sort((a, b) => tcpStream.get(a.stream)! - tcpStream.get(b.stream)! || a.index - b.index);
  return { entries, tcpStream };
}

describe.each(CAPTURES)('%s against tshark', (capture) => {
  test('same messages per tcp.stream: opcode, length, ids, namespace, command, element names', async () => {
    const { entries, tcpStream } = await run(capture);
    const expected = loadGolden(capture);
    expect(expected.length).toBe(5);
    const actual: Msg[] = entries.map((e) => {
      const raw = Buffer.from(e.request!.body!);
      // OP_QUERY: header, flags, namespace, skip, return, then the query document.
      const nsEnd = raw.indexOf(0, 20);
      return {
        stream: tcpStream.get(e.stream)!,
        timestamp: e.timestamp,
        opcode: e.mongodb_op,
        length: e.request!.body_size,
        requestId: e.mongodb_request_id,
        responseTo: raw.readUInt32LE(8),
        namespace: `${e.mongodb_database}.${e.mongodb_collection || '$cmd'}`,
        elements: names(readBsonDocument(raw, nsEnd + 9).doc),
      };
    });
    expect(actual).toEqual(expected);
    // The command is the first element; nothing was answered in this capture.
    expect(entries.map((e) => [e.method, e.mongodb_command, e.error])).toEqual(expected.map((m) => [m.elements[0], m.elements[0], 'pair-not-found']));
    expect(entries.map((e) => e.path)).toEqual(['admin', 'abtest', 'admin', 'admin', 'InactiveUserIdentity']);
    expect(JSON.parse(entries[0]!.mongodb_request_json)).toMatchObject({ ismaster: 1, client: { driver: { name: 'PyMongo', version: '3.4.0' } } });
  });
});

// ---------------------------------------------------------------------------------------------
// Hand-made streams.

type V = string | number | boolean | null | bigint | V[] | { doc: [string, V][] } | { double: number } | { raw: number; bytes: Buffer };

function cstr(s: string): Buffer {
  return Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);
}

/** A tiny BSON writer for the tests (numbers that are integers become int32). */
function bson(doc: [string, V][]): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of doc) {
    let type: number;
    let body: Buffer;
    if (typeof v === 'string') {
      const s = cstr(v);
      type = 0x02;
      body = Buffer.concat([Buffer.from(Uint32Array.of(s.length).buffer), s]);
    } else if (typeof v === 'number') {
      type = 0x10;
      body = Buffer.alloc(4);
      body.writeInt32LE(v);
    } else if (typeof v === 'boolean') {
      type = 0x08;
      body = Buffer.from([v ? 1 : 0]);
    } else if (v === null) {
      type = 0x0a;
      body = Buffer.alloc(0);
    } else if (typeof v === 'bigint') {
      type = 0x12;
      body = Buffer.alloc(8);
      body.writeBigInt64LE(v);
    } else if (Array.isArray(v)) {
      type = 0x04;
      body = bson(v.map((x, i) => [String(i), x]));
    } else if ('doc' in v) {
      type = 0x03;
      body = bson(v.doc);
    } else if ('double' in v) {
      type = 0x01;
      body = Buffer.alloc(8);
      body.writeDoubleLE(v.double);
    } else {
      type = v.raw;
      body = v.bytes;
    }
    parts.push(Buffer.from([type]), cstr(k), body);
  }
  const inner = Buffer.concat(parts);
  const out = Buffer.alloc(4 + inner.length + 1);
  out.writeInt32LE(out.length);
  inner.copy(out, 4);
  return out;
}

function header(requestId: number, responseTo: number, opcode: number, body: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeInt32LE(16 + body.length, 0);
  h.writeUInt32LE(requestId, 4);
  h.writeUInt32LE(responseTo, 8);
  h.writeInt32LE(opcode, 12);
  return Buffer.concat([h, body]);
}

const u32 = (n: number): Buffer => Buffer.from(Uint32Array.of(n).buffer);

function opMsg(requestId: number, responseTo: number, body: [string, V][], sequences: [string, [string, V][][]][] = [], flags = 0): Buffer {
  const parts = [u32(flags), Buffer.from([0]), bson(body)];
  for (const [id, docs] of sequences) {
    const payload = Buffer.concat([cstr(id), ...docs.map(bson)]);
    parts.push(Buffer.from([1]), u32(4 + payload.length), payload);
  }
  if (flags & 1) parts.push(u32(0xdeadbeef)); // checksum (not verified)
  return header(requestId, responseTo, 2013, Buffer.concat(parts));
}

function opQuery(requestId: number, ns: string, query: [string, V][]): Buffer {
  return header(requestId, 0, 2004, Buffer.concat([u32(0), cstr(ns), u32(0), u32(0xffffffff), bson(query)]));
}

function opReply(requestId: number, responseTo: number, docs: [string, V][][], flags = 8): Buffer {
  const fixed = Buffer.alloc(20);
  fixed.writeInt32LE(flags, 0);
  fixed.writeInt32LE(docs.length, 16);
  return header(requestId, responseTo, 1, Buffer.concat([fixed, ...docs.map(bson)]));
}

function compressed(inner: Buffer, compressor: number): Buffer {
  const original = inner.readInt32LE(12);
  const body = inner.subarray(16);
  const data = compressor === 2 ? zlib.deflateSync(body) : compressor === 0 ? body : Buffer.from('not really snappy');
  const fixed = Buffer.alloc(9);
  fixed.writeInt32LE(original, 0);
  fixed.writeInt32LE(body.length, 4);
  fixed[8] = compressor;
  return header(inner.readUInt32LE(4), inner.readUInt32LE(8), 2012, Buffer.concat([fixed, data]));
}

class Feed {
  readonly entries: MongodbEntry[] = [];
  readonly d: MongodbDissector;
  private readonly offsets: [number, number] = [0, 0];
  private ended = 0;

  constructor(options: MongodbDissectorOptions = {}, info: StreamOpen = { clientDir: 0 }, readonly stream = 4) {
    this.d = new MongodbDissector((e) => this.entries.push(e), options);
    this.d.open(stream, info);
  }

  data(dir: TcpDirection, bytes: Buffer, t: number, midStream = false): this {
    const wrapped = Buffer.concat([Buffer.from('zz'), bytes]);
    this.d.onData({ stream: this.stream, dir, offset: this.offsets[dir], buf: wrapped, start: 2, length: bytes.length, firstSec: Math.floor(t / 1000), firstNsec: (t % 1000) * 1e6, lastSec: 0, lastNsec: 0, midStream });
    wrapped.fill(0);
    this.offsets[dir] += bytes.length;
    return this;
  }

  gap(dir: TcpDirection, length: number): this {
    this.d.onGap({ stream: this.stream, dir, offset: this.offsets[dir], length, reason: 'acked', sec: 0, nsec: 0 });
    this.offsets[dir] += length;
    return this;
  }

  end(): MongodbEntry[] {
    for (const dir of [0, 1] as const) this.d.onEnd({ stream: this.stream, dir, offset: this.offsets[dir], reason: 'fin', sec: 0, nsec: 0, closed: ++this.ended === 2 });
    return this.entries;
  }
}

type Script = [TcpDirection, Buffer][];

const CONVERSATION: Script = [
  [0, opQuery(1, 'admin.$cmd', [['isMaster', 1], ['client', { doc: [['driver', { doc: [['name', 'nodejs']] }]] }]])],
  [1, opReply(100, 1, [[['ismaster', true], ['maxWireVersion', 17], ['ok', { double: 1 }]]])],
  [0, opMsg(2, 0, [['find', 'users'], ['filter', { doc: [['age', { doc: [['$gt', 30]] }]] }], ['$db', 'shop']])],
  [1, opMsg(101, 2, [['cursor', { doc: [['firstBatch', [{ doc: [['name', 'ann']] }]], ['id', 0n], ['ns', 'shop.users']] }], ['ok', { double: 1 }]])],
  [0, opMsg(3, 0, [['insert', 'orders'], ['ordered', true], ['$db', 'shop']], [['documents', [[['item', 'a']], [['item', 'b']]]]])],
  [1, opMsg(102, 3, [['n', 2], ['ok', { double: 1 }]])],
  [0, opMsg(4, 0, [['dropDatabase', 1], ['$db', 'prod']])],
  [1, opMsg(103, 4, [['ok', { double: 0 }], ['errmsg', 'not authorized on prod to execute command'], ['code', 13], ['codeName', 'Unauthorized']])],
  [0, opMsg(5, 0, [['update', 'users'], ['$db', 'shop']], [['updates', [[['q', { doc: [['_id', 1]] }], ['u', { doc: [['$set', { doc: [['x', 1]] }]] }]]]]], 1)],
  [1, opMsg(104, 5, [['n', 0], ['writeErrors', [{ doc: [['index', 0], ['code', 11000], ['errmsg', 'E11000 duplicate key error']] }]], ['ok', { double: 1 }]])],
  [0, opMsg(6, 0, [['insert', 'logs'], ['writeConcern', { doc: [['w', 0]] }], ['$db', 'shop']], [['documents', [[['m', 'x']]]]], 2)],
  [0, compressed(opMsg(7, 0, [['count', 'users'], ['$db', 'shop']]), 2)],
  [1, compressed(opMsg(105, 7, [['n', 1], ['ok', { double: 1 }]]), 0)],
  [0, compressed(opMsg(8, 0, [['ping', 1], ['$db', 'admin']]), 1)],
  [1, opMsg(106, 8, [['ok', { double: 1 }]])],
];

const summary = (es: MongodbEntry[]): unknown[] =>
  es.map((e) => [e.index, e.mongodb_op, e.method, e.path, e.mongodb_request_id, e.mongodb_ok, e.status_code, e.mongodb_code_name, e.mongodb_compressor, e.failure, e.error]);

const EXPECTED = [
  [0, 'OP_QUERY', 'isMaster', 'admin', 1, 1, 0, '', '', undefined, undefined],
  [1, 'OP_MSG', 'find', 'shop.users', 2, 1, 0, '', '', undefined, undefined],
  [2, 'OP_MSG', 'insert', 'shop.orders', 3, 1, 0, '', '', undefined, undefined],
  [3, 'OP_MSG', 'dropDatabase', 'prod', 4, 0, 13, 'Unauthorized', '', 'Unauthorized (13): not authorized on prod to execute command', undefined],
  [4, 'OP_MSG', 'update', 'shop.users', 5, 1, 11000, '', '', 'Error (11000): E11000 duplicate key error', undefined],
  [5, 'OP_MSG', 'insert', 'shop.logs', 6, null, 0, '', '', undefined, undefined],
  [6, 'OP_MSG', 'count', 'shop.users', 7, 1, 0, '', 'zlib', undefined, undefined],
  [7, 'OP_COMPRESSED', '', '', 8, 1, 0, '', 'snappy', undefined, undefined],
];

function play(script: Script, split?: number, options: MongodbDissectorOptions = {}): MongodbEntry[] {
  const f = new Feed(options);
  script.forEach(([dir, bytes], i) => {
    if (split === undefined || split >= bytes.length) f.data(dir, bytes, 1000 + i * 10);
    else f.data(dir, bytes.subarray(0, split), 1000 + i * 10).data(dir, bytes.subarray(split), 1000 + i * 10 + 1);
  });
  return f.end().sort((a, b) => a.index - b.index);
}

describe('MongoDB by hand', () => {
  test('legacy isMaster, OP_MSG find/insert (kind-1 documents)/errors/write errors, moreToCome, compression', () => {
    const es = play(CONVERSATION);
    expect(summary(es)).toEqual(EXPECTED);
    expect(JSON.parse(es[1]!.mongodb_request_json)).toEqual({ find: 'users', filter: { age: { $gt: 30 } }, $db: 'shop' });
    expect(JSON.parse(es[1]!.mongodb_response_json)).toEqual({ cursor: { firstBatch: [{ name: 'ann' }], id: { $numberLong: '0' }, ns: 'shop.users' }, ok: 1.0 });
    // Kind-1 sections are shown under their identifier next to the body.
    expect(JSON.parse(es[2]!.mongodb_request_json)).toEqual({ body: { insert: 'orders', ordered: true, $db: 'shop' }, documents: [{ item: 'a' }, { item: 'b' }] });
    expect(es[3]!.mongodb_error_message).toBe('not authorized on prod to execute command');
    expect(es[4]!.mongodb_flags).toBe(1); // checksumPresent: the checksum is not read as a section
    expect(JSON.parse(es[4]!.mongodb_request_json)).toMatchObject({ updates: [{ q: { _id: 1 } }] });
    expect(es[5]!.mongodb_flags).toBe(2); // moreToCome: no reply expected, not pair-not-found
    expect(JSON.parse(es[6]!.mongodb_request_json)).toEqual({ count: 'users', $db: 'shop' });
    expect(es[6]!.mongodb_collection).toBe('users');
    expect(es[0]!.elapsed_time).toBe(10_000);
  });

  test('the same entries whatever the segment boundaries', () => {
    const longest = Math.max(...CONVERSATION.map(([, b]) => b.length));
    for (let split = 1; split < longest; split++) expect([split, summary(play(CONVERSATION, split))]).toEqual([split, EXPECTED]);
    const f = new Feed();
    CONVERSATION.forEach(([dir, bytes], i) => {
      for (let k = 0; k < bytes.length; k++) f.data(dir, bytes.subarray(k, k + 1), 1000 + i * 10);
    });
    expect(summary(f.end().sort((a, b) => a.index - b.index))).toEqual(EXPECTED);
  });

  test('replies pair by responseTo, not by order; a reply to an unseen request stands alone', () => {
    const f = new Feed();
    f.data(0, opMsg(10, 0, [['find', 'a'], ['$db', 'd']]), 1).data(0, opMsg(11, 0, [['find', 'b'], ['$db', 'd']]), 2);
    f.data(1, opMsg(200, 11, [['ok', { double: 1 }]]), 3).data(1, opMsg(201, 10, [['ok', { double: 1 }]]), 4);
    f.data(1, opMsg(202, 999, [['ok', { double: 1 }]]), 5);
    f.data(0, opMsg(12, 0, [['find', 'c'], ['$db', 'd']]), 6);
    const es = f.end().sort((a, b) => a.index - b.index);
    expect(es.map((e) => [e.path, e.mongodb_ok, e.elapsed_time, e.error])).toEqual([
      ['d.a', 1, 3000, undefined],
      ['d.b', 1, 1000, undefined],
      ['', 1, 0, 'pair-not-found'],
      ['d.c', null, 0, 'pair-not-found'],
    ]);
  });

  test('exhaust: replies with moreToCome chain to the same request', () => {
    const f = new Feed();
    f.data(0, opMsg(1, 0, [['getMore', 7n], ['collection', 'events'], ['$db', 'd']], [], 0x10000), 1);
    f.data(1, opMsg(50, 1, [['cursor', { doc: [['nextBatch', [1, 2]]] }], ['ok', { double: 1 }]], [], 2), 2);
    f.data(1, opMsg(51, 50, [['cursor', { doc: [['nextBatch', [3]]] }], ['ok', { double: 1 }]], [], 2), 3);
    f.data(1, opMsg(52, 51, [['cursor', { doc: [['nextBatch', []]] }], ['ok', { double: 1 }]]), 4);
    f.data(1, opMsg(53, 52, [['ok', { double: 1 }]]), 5); // nothing awaits 52 any more
    const es = f.end().sort((a, b) => a.index - b.index);
    expect(es.map((e) => [e.index, e.method, e.path, e.mongodb_flags, e.timestamp, e.error])).toEqual([
      [0, 'getMore', 'd.events', 0x10000, 1000, undefined],
      [1, 'getMore', 'd.events', 0x10000, 3000, undefined],
      [2, 'getMore', 'd.events', 0x10000, 4000, undefined],
      [3, '', '', 0, 5000, 'pair-not-found'],
    ]);
    expect(JSON.parse(es[1]!.mongodb_response_json)).toEqual({ cursor: { nextBatch: [3] }, ok: 1.0 });
  });

  test('without the handshake the client is found by content (even an OP_QUERY with responseTo -1)', () => {
    const f = new Feed({}, { clientDir: undefined });
    f.data(1, opMsg(1, 0, [['ping', 1], ['$db', 'admin']]), 1).data(0, opMsg(2, 1, [['ok', { double: 1 }]]), 2);
    expect(f.end().map((e) => [e.method, e.mongodb_ok, e.error])).toEqual([['ping', 1, undefined]]);
    const q = opQuery(5, 'admin.$cmd', [['getnonce', 1]]);
    q.writeInt32LE(-1, 8);
    const g = new Feed({}, { clientDir: undefined });
    g.data(1, q, 1).data(0, opReply(6, 5, [[['nonce', 'abc'], ['ok', { double: 1 }]]]), 2);
    expect(g.end().map((e) => [e.method, e.mongodb_ok, e.error])).toEqual([['getnonce', 1, undefined]]);
  });

  test('joined mid-stream: the first chunk is skipped unless it starts a message', () => {
    const f = new Feed({}, { clientDir: undefined });
    const q = opMsg(1, 0, [['find', 'a'], ['$db', 'd']]);
    f.data(0, q.subarray(5), 1, true).data(0, opMsg(2, 0, [['find', 'b'], ['$db', 'd']]), 2);
    f.data(1, opMsg(3, 2, [['ok', { double: 1 }]]), 3, true);
    expect(f.end().map((e) => [e.path, e.error])).toEqual([['d.b', undefined]]);
  });

  test('legacy OP_QUERY with $query, OP_REPLY QueryFailure, OP_INSERT and OP_GET_MORE', () => {
    const f = new Feed();
    f.data(0, opQuery(1, 'shop.users', [['$query', { doc: [['age', 3]] }], ['$orderby', { doc: [['age', 1]] }]]), 1);
    f.data(1, opReply(2, 1, [[['$err', 'bad query'], ['code', 2]]], 2), 2);
    f.data(0, header(3, 0, 2002, Buffer.concat([u32(0), cstr('shop.users'), bson([['a', 1]])])), 3);
    f.data(0, header(4, 0, 2005, Buffer.concat([u32(0), cstr('shop.users'), u32(10), Buffer.alloc(8)])), 4);
    f.data(1, opReply(5, 4, []), 5);
    f.data(0, header(6, 0, 2001, Buffer.concat([u32(0), cstr('shop.users'), u32(1), bson([['_id', 1]]), bson([['$set', { doc: [['a', 2]] }]])])), 6);
    const es = f.end().sort((a, b) => a.index - b.index);
    expect(es.map((e) => [e.mongodb_op, e.method, e.path, e.mongodb_ok, e.failure, e.error])).toEqual([
      ['OP_QUERY', 'find', 'shop.users', 0, 'Error (2): bad query', undefined],
      ['OP_INSERT', 'insert', 'shop.users', null, undefined, undefined],
      ['OP_GET_MORE', 'getMore', 'shop.users', null, undefined, undefined],
      ['OP_UPDATE', 'update', 'shop.users', null, undefined, undefined],
    ]);
    expect(JSON.parse(es[3]!.mongodb_request_json)).toEqual({ selector: [{ _id: 1 }], update: [{ $set: { a: 2 } }] });
  });

  test('bounded: a 40 MB message is skipped past the bound; a gap resyncs at the next header', () => {
    const big = opMsg(1, 0, [['insert', 'blobs'], ['$db', 'd']], [['documents', [[['data', { raw: 0x05, bytes: Buffer.concat([u32(1000), Buffer.from([0]), Buffer.alloc(1000, 7)]) }]]]]]);
    const claimed = Buffer.from(big);
    claimed.writeInt32LE(40_000_000, 0);
    const f = new Feed({ maxMessageSize: 512, maxBodySize: 256, maxJson: 200 });
    f.data(0, claimed, 1);
    for (let i = 0; i < 100; i++) f.data(0, Buffer.alloc(100_000, 1), 2); // 10 MB of the rest
    f.gap(0, 40_000_000 - claimed.length - 10_000_000);
    f.data(1, opMsg(2, 1, [['ok', { double: 1 }]]), 3);
    f.data(0, opMsg(3, 0, [['ping', 1], ['$db', 'admin']]), 4).data(1, opMsg(4, 3, [['ok', { double: 1 }]]), 5);
    const es = f.end().sort((a, b) => a.index - b.index);
    expect(es.map((e) => [e.method, e.path, e.mongodb_ok, e.request!.body_size, e.request!.body!.length, e.error])).toEqual([
      ['insert', 'd.blobs', 1, 40_000_000, 256, 'dissection'],
      ['ping', 'admin', 1, 51, 51, undefined],
    ]);
    expect(es[0]!.mongodb_request_json.length).toBeLessThanOrEqual(201);
    // A hole at a random place: the direction resumes at a chunk starting with a header.
    const g = new Feed();
    g.data(0, opMsg(1, 0, [['find', 'x'], ['$db', 'd']]).subarray(0, 20), 1).gap(0, 30);
    g.data(0, Buffer.from('garbage that is not a header'), 2).data(0, opMsg(2, 0, [['find', 'y'], ['$db', 'd']]), 3);
    g.data(1, opMsg(3, 2, [['ok', { double: 1 }]]), 4);
    expect(g.end().map((e) => [e.path, e.error])).toEqual([['d.y', undefined]]);
    expect(g.d.stats().resyncs).toBe(1);
  });
});

describe('memory', () => {
  test('per stream bounded: a 40 MB message streamed, 5000 requests never answered', () => {
    const f = new Feed({ maxMessageSize: 64 * 1024 });
    let peak = 0;
    const big = opMsg(1, 0, [['insert', 'x'], ['$db', 'd']]);
    big.writeInt32LE(40_000_000, 0);
    f.data(0, big, 1);
    for (let sent = big.length; sent < 40_000_000; sent += 65_536) {
      f.data(0, Buffer.alloc(Math.min(65_536, 40_000_000 - sent)), 2);
      peak = Math.max(peak, f.d.stats().bufferedBytes);
    }
    for (let i = 0; i < 5000; i++) {
      f.data(0, opMsg(10 + i, 0, [['find', 'c'], ['filter', { doc: [['pad', 'p'.repeat(2000)]] }], ['$db', 'd']]), 3);
      peak = Math.max(peak, f.d.stats().bufferedBytes);
    }
    expect(peak).toBeLessThanOrEqual(4 * 1024 * 1024 + 2 * 65_536 + 4096);
    const es = f.end();
    expect(es).toHaveLength(5001);
    expect(es.every((e) => e.error === 'pair-not-found')).toBe(true);
    expect(f.d.stats().bufferedBytes).toBe(0);
  });
});

describe('BSON reader', () => {
  test('every type renders as Extended JSON', () => {
    const doc = bson([
      ['d', { double: 1.5 }],
      ['s', 'x"y'],
      ['o', { doc: [['a', 1]] }],
      ['arr', [1, 'two']],
      ['bin', { raw: 0x05, bytes: Buffer.concat([u32(3), Buffer.from([4, 1, 2, 3])]) }],
      ['u', { raw: 0x06, bytes: Buffer.alloc(0) }],
      ['oid', { raw: 0x07, bytes: Buffer.from('5f1d7a3b9c1e4a0012345678', 'hex') }],
      ['b', false],
      ['date', { raw: 0x09, bytes: Buffer.from(BigInt64Array.of(1700000000000n).buffer) }],
      ['n', null],
      ['re', { raw: 0x0b, bytes: Buffer.concat([cstr('^a'), cstr('i')]) }],
      ['js', { raw: 0x0d, bytes: Buffer.concat([u32(4), cstr('f()')]) }],
      ['i', 7],
      ['ts', { raw: 0x11, bytes: Buffer.concat([u32(1), u32(2)]) }],
      ['l', 9007199254740993n],
      ['dec', { raw: 0x13, bytes: Buffer.alloc(16, 0xab) }],
      ['min', { raw: 0xff, bytes: Buffer.alloc(0) }],
      ['max', { raw: 0x7f, bytes: Buffer.alloc(0) }],
    ]);
    const r = readBsonDocument(doc);
    expect(r.doc.cut).toBe(false);
    expect(r.end).toBe(doc.length);
    expect(JSON.parse(bsonToJson(r.doc))).toEqual({
      d: 1.5,
      s: 'x"y',
      o: { a: 1 },
      arr: [1, 'two'],
      bin: { $binary: { base64: 'AQID', subType: '04' } },
      u: { $undefined: true },
      oid: { $oid: '5f1d7a3b9c1e4a0012345678' },
      b: false,
      date: { $date: { $numberLong: '1700000000000' } },
      n: null,
      re: { $regularExpression: { pattern: '^a', options: 'i' } },
      js: { $code: 'f()' },
      i: 7,
      ts: { $timestamp: { t: 2, i: 1 } },
      l: { $numberLong: '9007199254740993' },
      dec: { $numberDecimal: `0x${'ab'.repeat(16)}` },
      min: { $minKey: 1 },
      max: { $maxKey: 1 },
    });
  });

  test('deep nesting, lying lengths, unknown types and truncation are bounded and never throw', () => {
    let deep: [string, V][] = [['x', 1]];
    for (let i = 0; i < 500; i++) deep = [['a', { doc: deep }]];
    const r = readBsonDocument(bson(deep));
    expect(r.doc.cut).toBe(true);
    expect(bsonToJson(r.doc, 100_000).split('{').length).toBeLessThanOrEqual(34);
    const lying = bson([['s', 'abc']]);
    lying.writeInt32LE(1_000_000_000, 7); // string length
    expect(readBsonDocument(lying).doc).toEqual({ entries: [], cut: true });
    const unknown = bson([['a', 1], ['z', { raw: 0x42, bytes: Buffer.alloc(3) }], ['b', 2]]);
    expect(readBsonDocument(unknown).doc.entries.map(([k]) => k)).toEqual(['a']);
    const good = bson([['a', 'hello'], ['b', { doc: [['c', 1]] }]]);
    for (let n = 0; n < good.length; n++) {
      const part = readBsonDocument(good.subarray(0, n));
      expect(part.doc.cut).toBe(true);
      expect(() => bsonToJson(part.doc)).not.toThrow();
    }
    expect(bsonToJson(readBsonDocument(bson([['s', 'x'.repeat(10_000)]])).doc, 50)).toHaveLength(51);
  });
});

// ---------------------------------------------------------------------------------------------
// Detection.

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

function verdicts(bytes: Buffer, fromClient: boolean | undefined): Set<string> {
  const seen = new Set<string>();
  for (let n = 1; n <= Math.min(64, bytes.length); n++) seen.add(MONGODB_PROTOCOL.detect(bytes.subarray(0, n), fromClient));
  seen.add(MONGODB_PROTOCOL.detect(bytes, fromClient));
  return seen;
}

describe('detection', () => {
  test('the capture\'s requests and every hand-made message are claimed; prefixes ask for more', async () => {
    const firsts = await firstBytes('ndpi/mongodb.pcap');
    expect(firsts).toHaveLength(5);
    for (const { key, bytes, fromClient } of firsts) {
      expect([key, MONGODB_PROTOCOL.detect(bytes, fromClient)]).toEqual([key, 'yes']);
      for (let n = 1; n < 21; n++) expect(MONGODB_PROTOCOL.detect(bytes.subarray(0, n), fromClient)).toBe('more');
    }
    for (const [, bytes] of CONVERSATION) expect(MONGODB_PROTOCOL.detect(bytes, undefined)).toBe('yes');
  });

  const others = goldenCaptures().filter((c) => !CAPTURES.includes(c));
  test.each(others)('%s: no stream is claimed', async (capture) => {
    for (const { key, bytes, fromClient } of await firstBytes(capture)) {
      for (const dir of new Set([fromClient, undefined])) expect([key, dir, verdicts(bytes, dir).has('yes')]).toEqual([key, dir, false]);
    }
  });

  test('random bytes are not claimed', () => {
    const rand = prng(7);
    let claimed = 0;
    for (let i = 0; i < 20000; i++) {
      const b = Buffer.from(Array.from({ length: 16 + Math.floor(rand() * 100) }, () => Math.floor(rand() * 256)));
      if (MONGODB_PROTOCOL.detect(b, undefined) === 'yes') claimed++;
    }
    expect(claimed).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Robustness.



describe('damaged', () => {
  test('ndpi/mongodb.pcap: truncated, flipped and holed streams; other streams unchanged', async () => {
    const clean = await run('ndpi/mongodb.pcap');
    let changed = 0;
    for (const mode of ['flip', 'gap', 'truncate'] as const) {
      for (let seed = 1; seed <= 5; seed++) {
        const victim = clean.entries[seed % clean.entries.length]!.stream;
        const r = await run('ndpi/mongodb.pcap', {}, (d) => damage(d, victim, seed, mode));
        expect(r.entries.filter((e) => e.stream !== victim)).toEqual(clean.entries.filter((e) => e.stream !== victim));
        const mine = (es: MongodbEntry[]): string => JSON.stringify(es.filter((e) => e.stream === victim).map((e) => [e.mongodb_command, e.mongodb_request_json]));
        if (mine(r.entries) !== mine(clean.entries)) changed++;
      }
    }
    expect(changed).toBeGreaterThan(0);
  });

  test('hand-made conversation with bytes flipped, cut or holed at random: never throws, bounded', () => {
    const whole = CONVERSATION;
    const rand = prng(3);
    for (let i = 0; i < 300; i++) {
      const f = new Feed({ maxMessageSize: 256, maxBodySize: 128, maxJson: 300 }, { clientDir: i % 2 === 0 ? 0 : undefined });
      for (const [dir, bytes] of whole) {
        const copy = Buffer.from(bytes);
        const r = rand();
        if (r < 0.2) copy[Math.floor(rand() * copy.length)] = Math.floor(rand() * 256);
        if (r > 0.9) f.gap(dir, copy.length);
        else f.data(dir, r > 0.8 ? copy.subarray(0, Math.floor(rand() * copy.length)) : copy, i);
      }
      for (const e of f.end()) {
        expect(e.request?.body?.length ?? 0).toBeLessThanOrEqual(128);
        expect(e.mongodb_request_json.length).toBeLessThanOrEqual(301);
        expect(e.mongodb_response_json.length).toBeLessThanOrEqual(301);
      }
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
    const viaRouter: MongodbEntry[] = [];
    const router = await routed(capture, { mongodb: (e) => viaRouter.push(e) });
    viaRouter.sort((a, b) => direct.tcpStream.get(a.stream)! - direct.tcpStream.get(b.stream)! || a.index - b.index);
    expect(viaRouter).toEqual(direct.entries);
    expect(router.stats().claimed).toMatchObject({ mongodb: 5, http: 0, mysql: 0 });
  });
});
