import * as protoLoader from '@grpc/proto-loader';
import { prng } from '@kubeshark-mcp/testkit';
import { LOADER_OPTIONS, WORKER_PROTO_PATH, decodeEntryFrame, decodeFlowList, encodeEntryFrame, encodeFlowList, workerServiceDefinition } from '../src';

// protobufjs through proto-loader, as the service used it before the codec: the reference.
const generic = protoLoader.loadSync(WORKER_PROTO_PATH, LOADER_OPTIONS)['kubeshark.worker.v1.Worker'] as protoLoader.ServiceDefinition;
const entries = generic.StreamEntries!;
const flows = generic.ListFlows!;

type Obj = Record<string, unknown>;

const random = prng(20261126);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
const int = (max: number): number => Math.floor(random() * max);

/** Strings as workers send them: empty, short ASCII, non-ASCII (2, 3 and 4 UTF-8 bytes), longer than the codec's JS path. */
function text(): string {
  switch (int(7)) {
    case 0:
      return '';
    case 1:
      return pick(['GET', 'http', 'node-a', '10.0.0.7', 'shop', 'checkout-7d9f', 'pair-not-found']);
    case 2:
      return `/api/v1/items/${int(1e6)}?q=${'x'.repeat(int(20))}`;
    case 3:
      return pick(['café', 'naïve/ß', 'Ωmega', '日本語のパス', 'emoji 🚀 and 🧪', 'planes \u{F0000} \u{10FFFD}', '\u0000\u007f\u0080\u07ff\u0800\uffff']);
    case 4:
      return 'long/'.repeat(10 + int(40)) + pick(['', 'é', '🚀']);
    case 5:
      return JSON.stringify({ url: 'x', headers: { a: 'b'.repeat(int(300)) } });
    default:
      return `${int(1e9)}_${int(1e4)}`;
  }
}

/** uint64 values that fit a Number: 0, one to five varint bytes, past 2^32, up to 2^53 - 1. */
const u64 = (): number => pick([0, 1, 127, 128, 16384, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 35 - 1, 2 ** 35, 1_764_150_000_123_456, Number.MAX_SAFE_INTEGER, int(2 ** 40)]);
const u32 = (): number => pick([0, 1, 80, 127, 128, 443, 65535, 2 ** 31, 2 ** 32 - 1, int(1000)]);

function endpoint(): Obj | null | undefined {
  if (random() < 0.15) return random() < 0.5 ? null : undefined;
  const e: Obj = { ip: pick(['10.0.0.1', 'fd00::1', '']), port: u32() };
  for (const k of ['name', 'namespace', 'pod', 'service', 'node', 'unresolved']) if (random() < 0.5) e[k] = text();
  return e;
}

function entry(): Obj {
  const e: Obj = { timestamp_us: u64(), elapsed_time_us: u64(), status_code: u32(), src: endpoint(), dst: endpoint() };
  for (const k of ['id', 'node', 'protocol', 'method', 'path', 'flow_id', 'json', 'url', 'error', 'failure']) if (random() < 0.8) e[k] = text();
  return e;
}

function entryFrame(): Obj {
  if (random() < 0.3) return { entry: entry(), cursor: text() };
  const n = int(60);
  return { batch: { entries: Array.from({ length: n }, entry), cursors: Array.from({ length: n }, text) } };
}

function direction(): Obj | null {
  if (random() < 0.2) return null;
  const d: Obj = { packets: u64(), bytes: u64(), payload_bytes: u64() };
  if (random() < 0.5) {
    const tcp: Obj = {};
    for (const k of ['retransmissions', 'fast_retransmissions', 'spurious_retransmissions', 'out_of_order', 'duplicate_acks', 'zero_windows', 'keep_alives', 'window_full', 'lost_segments', 'acked_unseen_segments']) tcp[k] = u64();
    d.tcp = tcp;
  }
  return d;
}

function flow(): Obj {
  const f: Obj = {
    id: text(),
    node: text(),
    protocol: pick(['TCP', 'UDP', 'L4_PROTOCOL_UNSPECIFIED', 1, 2]),
    client: endpoint(),
    server: endpoint(),
    client_to_server: direction(),
    server_to_client: direction(),
    first_seen_us: u64(),
    last_seen_us: u64(),
    state: pick(['closed', 'established', 'active', '']),
    syn_count: u32(),
    fin_count: u32(),
    rst_count: u32(),
    completeness: pick([0, 1, 15, 31, 63]),
  };
  // proto3 optional: absent, or present with any value (0 included).
  if (random() < 0.6) f.tcp_handshake_client_us = pick([0, 0.5, 1234.75, 1e9 + 0.125]);
  if (random() < 0.6) f.tcp_handshake_server_us = pick([0, 99.5, 3]);
  return f;
}

const flowList = (): Obj => ({ node: text(), flows: Array.from({ length: int(60) }, flow), groups: [], total: u32() });

/** What protobufjs gives for a value: the answer the codec must give too, key order included. */
const reference = (method: protoLoader.MethodDefinition<object, object>, value: Obj): unknown => method.responseDeserialize(method.responseSerialize(value));
const json = (v: unknown): string => JSON.stringify(v);

describe.each([
  ['StreamEntries frames', entries, entryFrame, encodeEntryFrame, decodeEntryFrame],
  ['ListFlows pages', flows, flowList, encodeFlowList, decodeFlowList],
] as const)('%s', (_name, method, make, encode, decode) => {
  test('both ways against protobufjs on 400 random messages', () => {
    for (let i = 0; i < 400; i++) {
      const value = make();
      const want = json(reference(method, value));
      const mine = encode(value);
      expect(mine).toBeInstanceOf(Buffer);
      // Our bytes read by protobufjs, protobufjs' bytes read by us, and our own round trip.
      expect(json(method.responseDeserialize(mine!))).toBe(want);
      expect(json(decode(method.responseSerialize(value)))).toBe(want);
      expect(json(decode(mine!))).toBe(want);
    }
  });

  test('fields it does not know are skipped, as protobufjs skips them', () => {
    const value = make();
    // Field 99 as a varint, field 98 as bytes, field 97 fixed32, field 96 fixed64: a newer worker's additions.
    const extra = Buffer.from([0x98, 0x06, 0x96, 0x01, 0x92, 0x06, 0x02, 0x61, 0x62, 0x8d, 0x06, 1, 2, 3, 4, 0x81, 0x06, 1, 2, 3, 4, 5, 6, 7, 8]);
    const bytes = Buffer.concat([method.responseSerialize(value), extra]);
    expect(json(decode(bytes))).toBe(json(method.responseDeserialize(bytes)));
  });

  test('a cut message never throws: it reads as protobufjs reads it, or is left to protobufjs', () => {
    const bytes = method.responseSerialize(make());
    for (let n = 0; n < Math.min(bytes.length, 600); n++) {
      const cut = bytes.subarray(0, n);
      const mine = decode(cut);
      if (mine === undefined) continue;
      expect(json(mine)).toBe(json(method.responseDeserialize(cut)));
    }
  });
});

describe('what the codec leaves to protobufjs', () => {
  test('frames other than entries and batches, and values protobufjs would convert', () => {
    const e = entry();
    expect(encodeEntryFrame({ node_status: { node: 'a', available: true } })).toBeUndefined();
    expect(decodeEntryFrame(entries.responseSerialize({ node_status: { node: 'a' } }))).toBeUndefined();
    expect(encodeEntryFrame({ entry: e, batch: { entries: [], cursors: [] } })).toBeUndefined();
    expect(encodeEntryFrame({ entry: { ...e, timestamp_us: '1764150000000000' } })).toBeUndefined();
    expect(encodeEntryFrame({ entry: { ...e, status_code: -1 } })).toBeUndefined();
    expect(encodeEntryFrame({ entry: { ...e, elapsed_time_us: 1.5 } })).toBeUndefined();
    expect(encodeEntryFrame({ entry: { ...e, id: 7 } })).toBeUndefined();
    expect(encodeEntryFrame({ batch: { entries: [e], cursors: [1] } })).toBeUndefined();
    expect(encodeEntryFrame(null)).toBeUndefined();
    const f = flow();
    expect(encodeFlowList({ node: 'n', flows: [f], groups: [{ key: 'a -> b' }], total: 1 })).toBeUndefined();
    expect(decodeFlowList(flows.responseSerialize({ node: 'n', flows: [f], groups: [{ key: 'a -> b' }], total: 1 }))).toBeUndefined();
    expect(encodeFlowList({ flows: [{ ...f, protocol: 'SCTP' }] })).toBeUndefined();
    expect(encodeFlowList({ flows: [{ ...f, tcp_handshake_client_us: '5' }] })).toBeUndefined();
  });

  test('an enum number the proto does not name comes back as the number, as protobufjs gives it', () => {
    const value = { node: 'n', flows: [{ ...flow(), protocol: 7 }], groups: [], total: 1 };
    expect(decodeFlowList(encodeFlowList(value)!)).toEqual(flows.responseDeserialize(flows.responseSerialize(value)));
    expect((decodeFlowList(encodeFlowList(value)!)!.flows as Obj[])[0]!.protocol).toBe(7);
  });

  test('the service definition that worker and hub use goes through the codec and still answers the rest', () => {
    const service = workerServiceDefinition();
    const frame = entryFrame();
    expect(service.StreamEntries!.responseSerialize(frame)).toEqual(encodeEntryFrame(frame));
    const status = { node_status: { node: 'a', available: true, message: '' } };
    expect(json(service.StreamEntries!.responseDeserialize(service.StreamEntries!.responseSerialize(status)))).toBe(json(reference(entries, status)));
    const grouped = { node: 'n', flows: [], groups: [{ key: 'a -> b', flows: 2 }], total: 1 };
    expect(json(service.ListFlows!.responseDeserialize(service.ListFlows!.responseSerialize(grouped)))).toBe(json(reference(flows, grouped)));
  });
});
