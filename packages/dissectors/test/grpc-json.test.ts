import zlib from 'node:zlib';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as descriptor from 'protobufjs/ext/descriptor';
import type { TcpChunk, TcpDirection } from '@kubeshark-mcp/capture';
import { GOLDEN_DIR, REPO_ROOT } from '@kubeshark-mcp/testkit';
import type { HeaderList } from '../src/entry';
import { GrpcDescriptorError, GrpcJsonDecoder, type GrpcJsonBody } from '../src/grpc-json';
import { HTTP2_PREFACE, Http2Dissector, type Http2Entry } from '../src/http2';
import { feedCapture } from './support/feed';

/**
 * The gRPC JSON decoder against tshark's protobuf dissector on the same captures, given the same
 * .proto files (fixtures/protos, compiled by protoc into the .binpb descriptor sets the decoder
 * reads): fixtures/golden/<capture>/grpc-messages.json, written by scripts/golden-grpc-json.sh.
 * The grpc-go-book captures carry one-string messages; derived/grpc-inventory.pcap (messages
 * encoded by protoc, scripts/make-grpc-capture.py) carries every kind of field the proto3 JSON
 * mapping treats specially, a response split over DATA frames and TCP segments, and a
 * gzip-compressed response. Then behaviour by behaviour on hand-made bodies.
 *
 * How tshark's view maps to proto3 JSON (what we check): keys are the .proto field names in
 * lowerCamelCase, except a json_name the .proto sets (inventory.proto: display_name -> "label");
 * every field tshark shows is a key of ours and the other way round; repeated fields are arrays
 * in tshark's order; map entries (tshark: messages with key and value) are one object; scalars
 * by the type tshark reports: bool "1"/"0", numbers equal, 64-bit integers as the same decimal
 * string, enums by the name tshark shows next to the number (the number when the value is not
 * in the enum), strings equal to the UTF-8 of tshark's bytes, bytes as base64 of them; Timestamp and Duration as RFC 3339 / "<seconds>s" strings built from
 * the seconds and nanos tshark shows; wrappers as their value.
 */

const PROTOS = path.join(REPO_ROOT, 'fixtures', 'protos');
const GREET = readFileSync(path.join(PROTOS, 'greet.binpb'));
const INVENTORY = readFileSync(path.join(PROTOS, 'inventory.binpb'));

type GScalar = [name: string, show: string, display: string, raw: string, type: number];
type GNested = [name: string, msg: GMessage];
interface GMessage {
  type: string;
  fields: (GScalar | GNested)[];
}
interface GoldenMessage extends GMessage {
  frame: number;
  tcp_stream: number;
  path: string;
  direction: 'request' | 'response';
}

/** json_name options of fixtures/protos/inventory.proto; other fields use the default lowerCamelCase. */
const JSON_NAMES: Record<string, string> = { display_name: 'label' };
const jsonKey = (name: string): string => JSON_NAMES[name] ?? name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

const frac = (nanos: number): string => (nanos === 0 ? '' : nanos % 1e6 === 0 ? `.${String(nanos / 1e6).padStart(3, '0')}` : nanos % 1e3 === 0 ? `.${String(nanos / 1e3).padStart(6, '0')}` : `.${String(nanos).padStart(9, '0')}`);
const nestedField = (m: GMessage, name: string): string => {
  const f = m.fields.find((x) => x[0] === name);
  return f && typeof f[1] === 'string' ? f[1] : '0';
};

/** FieldDescriptorProto.Type numbers tshark reports for each field. */
const T = { DOUBLE: 1, FLOAT: 2, INT64: 3, UINT64: 4, FIXED64: 6, BOOL: 8, STRING: 9, BYTES: 12, ENUM: 14, SFIXED64: 16, SINT64: 18 } as const;

/** What proto3 JSON makes of one scalar tshark shows, by its declared type. */
function expectedScalar(g: GScalar): unknown {
  const [, show, display, raw, type] = g;
  switch (type) {
    case T.BOOL:
      return show === '1';
    case T.STRING:
      return Buffer.from(raw, 'hex').toString('utf8');
    case T.BYTES:
      return Buffer.from(raw, 'hex').toString('base64');
    case T.INT64:
    case T.UINT64:
    case T.FIXED64:
    case T.SFIXED64:
    case T.SINT64:
      return show;
    case T.ENUM: {
      // "NAME (n)", or "Unknown (n)" for a number the enum does not name.
      const m = /^(.+) \((-?\d+)\)$/.exec(display);
      return m && m[1] !== 'Unknown' ? m[1] : Number(show);
    }
    case T.DOUBLE:
    case T.FLOAT:
      return show === 'nan' ? 'NaN' : show === 'inf' ? 'Infinity' : show === '-inf' ? '-Infinity' : Number(show);
    default:
      return Number(show);
  }
}

function expectScalar(ours: unknown, g: GScalar, at: string): void {
  expect({ at, value: ours }).toEqual({ at, value: expectedScalar(g) });
}

function expectValue(ours: unknown, g: GScalar | GNested, at: string): void {
  if (typeof g[1] === 'string') return expectScalar(ours, g as GScalar, at);
  const m = g[1];
  switch (m.type) {
    case 'google.protobuf.Timestamp': {
      const seconds = Number(nestedField(m, 'seconds'));
      return expect(ours).toBe(`${new Date(seconds * 1000).toISOString().slice(0, 19)}${frac(Number(nestedField(m, 'nanos')))}Z`);
    }
    case 'google.protobuf.Duration':
      return expect(ours).toBe(`${nestedField(m, 'seconds')}${frac(Number(nestedField(m, 'nanos')))}s`);
    case 'google.protobuf.StringValue':
      return expect(ours).toBe(m.fields.length ? m.fields[0]![1] : '');
    default:
      return expectMessage(ours, m, at);
  }
}

function expectMessage(ours: unknown, g: GMessage, at: string): void {
  expect(typeof ours === 'object' && ours !== null && !Array.isArray(ours)).toBe(true);
  const obj = ours as Record<string, unknown>;
  const byName = new Map<string, (GScalar | GNested)[]>();
  for (const f of g.fields) byName.set(f[0], [...(byName.get(f[0]) ?? []), f]);
  expect(Object.keys(obj).sort()).toEqual([...byName.keys()].map(jsonKey).sort());
  for (const [name, list] of byName) {
    const v = obj[jsonKey(name)];
    const where = `${at}.${name}`;
    const first = list[0]![1];
    if (typeof first === 'object' && first.type.endsWith('MapEntry')) {
      // A map: tshark shows its entries as messages with key and value.
      const expected = new Map(list.map((e) => [nestedField(e[1] as GMessage, 'key'), (e[1] as GMessage).fields.find((f) => f[0] === 'value')!]));
      expect(Object.keys(v as object).sort()).toEqual([...expected.keys()].sort());
      for (const [k, val] of expected) expectValue((v as Record<string, unknown>)[k], val, `${where}[${k}]`);
    } else if (Array.isArray(v)) {
      expect(v).toHaveLength(list.length);
      v.forEach((x, i) => expectValue(x, list[i]!, `${where}[${i}]`));
    } else {
      expect(list).toHaveLength(1);
      expectValue(v, list[0]!, where);
    }
  }
}

const GOLDEN: [capture: string, descriptorSet: Buffer][] = [
  ['grpc-go-book/grpc_Unary.pcapng', GREET],
  ['grpc-go-book/grpc_Client_Streaming.pcapng', GREET],
  ['grpc-go-book/grpc_Server_Streaming.pcapng', GREET],
  ['grpc-go-book/grpc_Bidi_Streaming.pcapng', GREET],
  ['derived/grpc-inventory.pcap', INVENTORY],
];

describe.each(GOLDEN)('%s against tshark', (capture, set) => {
  const golden = JSON.parse(readFileSync(path.join(GOLDEN_DIR, capture, 'grpc-messages.json'), 'utf8')) as GoldenMessage[];

  test('every message decodes to the fields and values tshark shows, in order', async () => {
    const entries: Http2Entry[] = [];
    const { tcpStream } = await feedCapture(capture, new Http2Dissector((e) => entries.push(e)));
    const decoder = new GrpcJsonDecoder(set);
    const ours = new Map<string, { type: string | undefined; json: unknown[] }>();
    for (const e of entries.filter((x) => x.protocol === 'grpc')) {
      for (const side of ['request', 'response'] as const) {
        const m = e[side]!;
        const body = decoder.decode(e.path, side, m, side === 'request' ? e.grpc_request_messages : e.grpc_response_messages);
        expect(body.omitted).toBe(0);
        for (const x of body.messages) expect(x.error).toBeUndefined();
        const key = `${tcpStream.get(e.stream)} ${e.path} ${side}`;
        const prev = ours.get(key)?.json ?? [];
        ours.set(key, { type: body.type, json: [...prev, ...body.messages.map((x) => x.json)] });
      }
    }
    const theirs = new Map<string, GoldenMessage[]>();
    for (const g of golden) {
      const key = `${g.tcp_stream} ${g.path} ${g.direction}`;
      theirs.set(key, [...(theirs.get(key) ?? []), g]);
    }
    expect(golden.length).toBeGreaterThan(0);
    expect([...ours.keys()].filter((k) => ours.get(k)!.json.length > 0).sort()).toEqual([...theirs.keys()].sort());
    for (const [key, list] of theirs) {
      const mine = ours.get(key)!;
      expect(mine.json).toHaveLength(list.length);
      for (const g of list) expect(mine.type).toBe(g.type);
      list.forEach((g, i) => expectMessage(mine.json[i], g, `${key} #${i} (frame ${g.frame})`));
    }
  });
});

test('the inventory capture holds what the decoder must get right (the oracle is not trivially empty)', () => {
  const golden = JSON.parse(readFileSync(path.join(GOLDEN_DIR, 'derived/grpc-inventory.pcap', 'grpc-messages.json'), 'utf8')) as GoldenMessage[];
  const item = golden.find((g) => g.type === 'shop.inventory.v1.Item')!;
  const names = item.fields.map((f) => f[0]);
  for (const n of ['stock_count', 'delta', 'thumbnail', 'condition', 'price', 'stock_by_site', 'batch_no', 'updated_at', 'shelf_life', 'reorder_level', 'checksum', 'display_name', 'history']) expect(names).toContain(n);
  expect(golden.find((g) => g.type === 'shop.inventory.v1.ListItemsResponse')!.fields.filter((f) => f[0] === 'items')).toHaveLength(2);
});

describe('the inventory messages in proto3 JSON', () => {
  // The exact JSON, written by hand from the text-format messages in scripts/make-grpc-capture.py.
  let item: unknown;
  let list: unknown;
  let request: unknown;
  beforeAll(async () => {
    const entries: Http2Entry[] = [];
    await feedCapture('derived/grpc-inventory.pcap', new Http2Dissector((e) => entries.push(e)));
    const d = new GrpcJsonDecoder(INVENTORY);
    const get = entries.find((e) => e.path.endsWith('/GetItem'))!;
    item = d.decode(get.path, 'response', get.response!).messages[0]!.json;
    request = d.decode(get.path, 'request', get.request!).messages[0]!.json;
    const li = entries.find((e) => e.path.endsWith('/ListItems'))!;
    const res = d.decode(li.path, 'response', li.response!);
    expect(res.messages[0]!.compressed).toBe(true);
    list = res.messages[0]!.json;
  });

  test('Item: 64-bit integers as strings, enums by name, bytes base64, maps, oneof, well-known types, json_name, explicit presence', () => {
    expect(item).toEqual({
      sku: 'SKU-1001',
      stockCount: '18446744073709551615',
      delta: '-9007199254740993',
      weightKg: 1.25,
      rating: 4.5,
      active: true,
      thumbnail: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x00, 0xff]).toString('base64'),
      condition: 'CONDITION_USED',
      price: { currencyCode: 'EUR', units: '1234567890123', nanos: -500000000 },
      tags: ['red', 'sale', 'käse'],
      binIds: [3, -7, 2147483647],
      stockBySite: { ams: 12, fra: 0 },
      batchNo: 77,
      updatedAt: '2025-11-26T09:40:00.123Z',
      shelfLife: '3600.000000500s',
      reorderLevel: 0,
      checksum: '12345678901234567890',
      temperature: -40,
      label: 'Blue mug',
      history: [
        { currencyCode: 'EUR', units: '9' },
        { currencyCode: 'USD', units: '-3', nanos: 250000000 },
      ],
    });
  });

  test('a wrapper is its value; an unknown enum number stays a number; the other oneof member is named', () => {
    expect(request).toEqual({ sku: 'SKU-1001', warehouse: 'ams-1' });
    expect(list).toEqual({
      items: [
        { sku: 'SKU-1', condition: 'CONDITION_NEW', supplierId: 'acme', active: true },
        { sku: 'SKU-2', stockCount: '5', delta: '42', tags: ['x'], condition: 7 },
      ],
      nextPageToken: 'p2',
    });
  });
});

// ---- by hand ----

const GREET_PATH = '/greet.GreetService/Greet';
/** GreetRequest { first_name = 1 } encoded by hand: tag 0x0a, length, UTF-8. */
const greetRequest = (name: string): Buffer => Buffer.concat([Buffer.from([0x0a, Buffer.byteLength(name)]), Buffer.from(name)]);
const prefixed = (msg: Uint8Array, compressed = false): Buffer => {
  const p = Buffer.alloc(5);
  p[0] = compressed ? 1 : 0;
  p.writeUInt32BE(msg.length, 1);
  return Buffer.concat([p, msg]);
};
const side = (body: Buffer | null, headers: HeaderList = [], truncated = false) => ({ body, truncated, headers });

describe('by hand', () => {
  const d = new GrpcJsonDecoder(GREET);

  test('the descriptor set names its methods and files', () => {
    expect(d.methods).toEqual(['/greet.GreetService/Greet', '/greet.GreetService/GreetEveryone', '/greet.GreetService/GreetManyTimes', '/greet.GreetService/LongGreet']);
    expect(d.files).toEqual(['greet.proto']);
  });

  test('several messages in one body, each decoded with the side type; a default string is left out', () => {
    const body = Buffer.concat([prefixed(greetRequest('Ann')), prefixed(greetRequest('')), prefixed(Buffer.from([0x12, 0x02, 0x4f, 0x4b]))]);
    const out = d.decode('/greet.GreetService/LongGreet', 'request', side(body), 3);
    expect(out).toEqual({ type: 'greet.GreetRequest', omitted: 0, messages: [{ size: 5, json: { firstName: 'Ann' } }, { size: 2, json: {} }, { size: 4, json: { lastName: 'OK' } }] });
    const res = d.decode('/greet.GreetService/LongGreet', 'response', side(prefixed(Buffer.from([0x0a, 0x02, 0x68, 0x69])))).messages[0];
    expect(res).toEqual({ size: 4, json: { result: 'hi' } });
  });

  test.each([
    ['gzip', zlib.gzipSync],
    ['deflate', zlib.deflateSync],
  ] as const)('a compressed message (grpc-encoding %s) is inflated first', (encoding, compress) => {
    const wire = compress(greetRequest('Zoë'));
    const out = d.decode(GREET_PATH, 'request', side(prefixed(wire, true), [['grpc-encoding', encoding]]), 1);
    expect(out.messages).toEqual([{ size: wire.length, compressed: true, json: { firstName: 'Zoë' } }]);
  });

  test('compression the decoder cannot undo is a reason, not an exception', () => {
    const gz = zlib.gzipSync(greetRequest('x'));
    const one = (headers: HeaderList, msg: Buffer = gz) => d.decode(GREET_PATH, 'request', side(prefixed(msg, true), headers)).messages[0]!;
    expect(one([['grpc-encoding', 'snappy']]).error).toBe('grpc-encoding snappy is not supported (gzip and deflate are)');
    expect(one([]).error).toBe('compressed flag set but grpc-encoding is identity or absent');
    expect(one([['grpc-encoding', 'gzip']], Buffer.from('not gzip at all')).error).toMatch(/^does not inflate as gzip: /);
    // A decompression bomb stops at the inflate limit.
    const bomb = zlib.gzipSync(Buffer.alloc(5_000_000));
    const small = new GrpcJsonDecoder(GREET, { maxInflatedSize: 64 * 1024 });
    expect(small.decode(GREET_PATH, 'request', side(prefixed(bomb, true), [['grpc-encoding', 'gzip']])).messages[0]!.error).toBe('inflates to more than 65536 bytes');
  });

  test('a message split across DATA frames (and packets) is decoded whole from the body the HTTP/2 dissector kept', () => {
    const msg = prefixed(greetRequest('Split across three frames'));
    const entries: Http2Entry[] = [];
    const h2 = new Http2Dissector((e) => entries.push(e));
    h2.open(7, { clientDir: 0 });
    const offsets = [0, 0];
    const send = (dir: TcpDirection, bytes: Buffer): void => {
      const chunk: TcpChunk = { stream: 7, dir, offset: offsets[dir]!, buf: bytes, start: 0, length: bytes.length, firstSec: 1, firstNsec: 0, lastSec: 1, lastNsec: 0, midStream: false };
      h2.onData(chunk);
      offsets[dir]! += bytes.length;
    };
    const grpcHeaders: HeaderList = [[':method', 'POST'], [':scheme', 'http'], [':path', GREET_PATH], [':authority', 'greet:50051'], ['content-type', 'application/grpc']];
    send(0, Buffer.concat([HTTP2_PREFACE, h2frame(4, 0, 0, Buffer.alloc(0)), h2frame(1, 4, 1, hpack(grpcHeaders)), h2frame(0, 0, 1, msg.subarray(0, 3))]));
    send(0, Buffer.concat([h2frame(0, 0, 1, msg.subarray(3, 12)), h2frame(0, 1, 1, msg.subarray(12))]));
    send(1, Buffer.concat([h2frame(4, 0, 0, Buffer.alloc(0)), h2frame(1, 4, 1, hpack([[':status', '200'], ['content-type', 'application/grpc']])), h2frame(0, 0, 1, prefixed(Buffer.from([0x0a, 0x02, 0x6f, 0x6b]))), h2frame(1, 5, 1, hpack([['grpc-status', '0']]))]));
    expect(entries).toHaveLength(1);
    const e = entries[0]!;
    expect(d.decode(e.path, 'request', e.request!, e.grpc_request_messages).messages).toEqual([{ size: msg.length - 5, json: { firstName: 'Split across three frames' } }]);
    expect(d.decode(e.path, 'response', e.response!, e.grpc_response_messages).messages).toEqual([{ size: 4, json: { result: 'ok' } }]);
  });

  test('an unknown method (or a path that is not one) gives each message a reason and no type', () => {
    const body = Buffer.concat([prefixed(greetRequest('a')), prefixed(greetRequest('b'))]);
    expect(d.decode('/greet.GreetService/Nope', 'request', side(body), 2)).toEqual({
      messages: [
        { size: 3, error: 'method /greet.GreetService/Nope is not in the descriptor set' },
        { size: 3, error: 'method /greet.GreetService/Nope is not in the descriptor set' },
      ],
      omitted: 0,
    });
    expect(d.decode('/other.Svc/Greet', 'response', side(body)).messages[0]!.error).toBe('method /other.Svc/Greet is not in the descriptor set');
    expect(d.decode('/not-a-grpc-path', 'request', side(body)).messages[0]!.error).toBe('method /not-a-grpc-path is not in the descriptor set');
  });

  test('a corrupted message is a reason; the messages around it still decode', () => {
    const bad = [
      [0x0a, 100, 0x41, 0x42], // field 1 claims 100 bytes of string; 2 follow
      [0x0f, 0x01], // wire type 7
      [0x08, 0x01], // first_name (a string) sent as a varint
      [0x0a, 0x02, 0xc3, 0x28], // first_name not UTF-8
      [0x12, 0x01], // last_name's length, and nothing after
    ].map((b) => Buffer.from(b));
    const body = Buffer.concat([prefixed(greetRequest('ok')), ...bad.map((b) => prefixed(b)), prefixed(greetRequest('still'))]);
    const out = d.decode(GREET_PATH, 'request', side(body), 7).messages;
    expect(out[0]).toEqual({ size: 4, json: { firstName: 'ok' } });
    expect(out.slice(1, 6).map((m) => m.error)).toEqual([
      'does not decode as greet.GreetRequest: field 1 runs past the end of the message',
      'does not decode as greet.GreetRequest: invalid wire type 7 at byte 0',
      'does not decode as greet.GreetRequest: field first_name (1) has wire type 0, not 2',
      'does not decode as greet.GreetRequest: field first_name (1) is not valid UTF-8',
      'does not decode as greet.GreetRequest: field 2 runs past the end of the message',
    ]);
    expect(out[6]).toEqual({ size: 7, json: { firstName: 'still' } });
    for (const m of out.slice(1, 6)) expect(m.json).toBeUndefined();
  });

  test('a truncated body: the cut message and those never kept say so', () => {
    const full = Buffer.concat([prefixed(greetRequest('first')), prefixed(greetRequest('second one'))]);
    // Cut inside the second message; the dissector counted three messages on the wire.
    const out = d.decode(GREET_PATH, 'request', side(full.subarray(0, 20), [], true), 3);
    expect(out.messages).toEqual([
      { size: 7, json: { firstName: 'first' } },
      { size: 12, error: 'truncated: 3 of 12 bytes kept (body size limit or bytes missing)' },
      { error: 'not kept (body size limit or bytes missing)' },
    ]);
    // Cut inside a prefix.
    expect(d.decode(GREET_PATH, 'request', side(full.subarray(0, 14), [], true), 2).messages[1]).toEqual({ error: 'truncated: 2 of the 5 prefix bytes kept' });
    // No body kept at all.
    expect(d.decode(GREET_PATH, 'request', side(null, [], true), 1).messages).toEqual([{ error: 'not kept (body size limit or bytes missing)' }]);
  });

  test('output is bounded: messages over maxMessages are counted, JSON over maxJsonChars is refused', () => {
    const body = Buffer.concat(Array.from({ length: 10 }, (_, i) => prefixed(greetRequest(`name-${i}`))));
    const few = new GrpcJsonDecoder(GREET, { maxMessages: 3 }).decode(GREET_PATH, 'request', side(body), 12);
    expect(few.messages.map((m) => m.json)).toEqual([{ firstName: 'name-0' }, { firstName: 'name-1' }, { firstName: 'name-2' }]);
    expect(few.omitted).toBe(9);
    const json = JSON.stringify({ firstName: 'name-0' }).length;
    const tight = new GrpcJsonDecoder(GREET, { maxJsonChars: json * 2 + 1 }).decode(GREET_PATH, 'request', side(body)).messages;
    expect(tight.slice(0, 2).map((m) => m.json)).toEqual([{ firstName: 'name-0' }, { firstName: 'name-1' }]);
    expect(tight[2]).toEqual({ size: 8, error: `JSON of ${json} characters over the output limit (${json * 2 + 1} per body)` });
  });

  test('random bytes never throw', () => {
    const inv = new GrpcJsonDecoder(INVENTORY);
    let seed = 7;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    for (let i = 0; i < 300; i++) {
      const msg = Buffer.from(Array.from({ length: Math.floor(rnd() * 80) }, () => Math.floor(rnd() * 256)));
      const body = rnd() < 0.5 ? prefixed(msg, rnd() < 0.2) : msg;
      let out: GrpcJsonBody | undefined;
      expect(() => (out = inv.decode('/shop.inventory.v1.InventoryService/GetItem', rnd() < 0.5 ? 'request' : 'response', side(body, [['grpc-encoding', 'gzip']], rnd() < 0.5), 2))).not.toThrow();
      for (const m of out!.messages) expect(m.json !== undefined || typeof m.error === 'string').toBe(true);
    }
  });
});

describe('loading a descriptor set', () => {
  test('bytes that are not a FileDescriptorSet are refused', () => {
    expect(() => new GrpcJsonDecoder(Buffer.from('syntax = "proto3"; package x;'))).toThrow(GrpcDescriptorError);
    expect(() => new GrpcJsonDecoder(Buffer.alloc(0))).toThrow(/no named file descriptors/);
  });

  const reencode = (edit: (files: Record<string, unknown>[]) => Record<string, unknown>[]): Uint8Array => {
    const set = descriptor.FileDescriptorSet.toObject(descriptor.FileDescriptorSet.decode(INVENTORY)) as { file: Record<string, unknown>[] };
    return descriptor.FileDescriptorSet.encode(descriptor.FileDescriptorSet.fromObject({ file: edit(set.file) })).finish();
  };

  test('a set built without --include_imports names the missing type', () => {
    const bytes = reencode((files) => files.filter((f) => !String(f.name).startsWith('google/')));
    expect(() => new GrpcJsonDecoder(bytes)).toThrow(/does not load: .*google\.protobuf.*--include_imports/);
  });

  test('a set without services is refused', () => {
    const bytes = reencode((files) => files.map((f) => ({ ...f, service: [] })));
    expect(() => new GrpcJsonDecoder(bytes)).toThrow('the descriptor set defines no service, so no gRPC method can be decoded');
  });
});

// ---- HTTP/2 framing for the split-message test ----

function h2frame(type: number, flags: number, sid: number, payload: Uint8Array): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(sid, 5);
  return Buffer.concat([h, payload]);
}

/** Literal header fields without indexing, not Huffman-coded (lengths < 127). */
function hpack(fields: HeaderList): Buffer {
  return Buffer.concat(fields.map(([n, v]) => Buffer.concat([Buffer.from([0x00, n.length]), Buffer.from(n), Buffer.from([Buffer.byteLength(v)]), Buffer.from(v)])));
}
