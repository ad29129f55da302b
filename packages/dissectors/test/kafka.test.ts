import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { TcpChunk, TcpDirection, TcpEnd, TcpGap } from '@kubeshark-mcp/capture';
import { GOLDEN_DIR } from '@kubeshark-mcp/testkit';
import { DNS_TCP_PROTOCOL, DnsDissector } from '../src/dns';
import { HTTP_PROTOCOL, HttpDissector } from '../src/http1';
import { AMQP_PROTOCOL, AmqpDissector } from '../src/amqp';
import { KAFKA_API_KEYS, KAFKA_PROTOCOL, KafkaDissector, kafkaFailure, type KafkaDissectorOptions, type KafkaEntry } from '../src/kafka';
import type { StreamOpen, TcpDissector } from '../src/stream';
import { feedCapture } from './support/feed';
import { prng } from './support/damage';
import { routeCapture } from './support/feed';

/**
 * The Kafka dissector against tshark's Kafka fields for the shared capture
 * (fixtures/golden/ndpi/kafka.pcapng/kafka.psv), then on byte-exact streams built from the
 * Kafka protocol guide for what the capture lacks, then under damage.
 *
 * What we compare, per tcp.stream in order: each request's API key, version, correlation id,
 * client id and topics, whether tshark paired it with a response and the response's first
 * error code, the request's capture time and the response's delay; responses tshark shows
 * without a request come out as entries without one (API key -1) with their correlation id.
 */

const CAPTURE = 'ndpi/kafka.pcapng';

/**
 * Where we deliberately differ from tshark 4.0.17, by request frame. tshark 4.0 knows
 * Metadata up to v11 and Produce up to v8 ("Unsupported API version"): it reads the topic id
 * of a Metadata v12 request as the topic name (`[ Null ]`: the request names its topic by
 * name, the id is all zeros) and gives up on the Produce v9 request (no topics), which also
 * leaves its response unpaired. We read both by the protocol guide's v12/v9 layouts.
 */
const DIFFERENCES: Record<number, { topics?: string[]; answered?: boolean; errorCode?: number }> = {
  33: { topics: ['sampleTopic'] },
  36: { topics: ['sampleTopic'], answered: true, errorCode: 0 },
};

interface Expected {
  stream: number;
  apiKey: number;
  version: number;
  correlationId: number;
  clientId: string;
  topics: string[];
  answered: boolean;
  errorCode: number;
  /** Capture time of the request's (or lone response's) frame, microseconds. */
  time: number;
  /** Response frame time minus request frame time, microseconds; 0 without a response. */
  elapsed: number;
}

const nanos = (epoch: string): bigint => {
  const [s, f = ''] = epoch.split('.');
  return BigInt(s!) * 1_000_000_000n + BigInt(f.padEnd(9, '0'));
};
const micros = (epoch: string): number => Number(nanos(epoch) / 1000n);
/** A delay in microseconds, rounded as the dissector rounds it. */
const delay = (from: string, to: string): number => Math.round(Number(nanos(to) - nanos(from)) / 1000);

function tsharkEntries(): Expected[] {
  const [head, ...lines] = readFileSync(path.join(GOLDEN_DIR, CAPTURE, 'kafka.psv'), 'utf8').split('\n');
  const cols = head!.split('|');
  const rows = lines.filter((l) => l.trim() !== '').map((l) => l.split('|'));
  const at = (r: string[], name: string): string => r[cols.indexOf(name)] ?? '';
  const responses = new Map<string, string[]>();
  for (const r of rows) if (at(r, 'kafka.request_frame') !== '') responses.set(at(r, 'kafka.request_frame'), r);
  const out: (Expected & { frame: number })[] = [];
  for (const r of rows) {
    const frame = Number(at(r, 'frame.number'));
    const base = { frame, stream: Number(at(r, 'tcp.stream')), correlationId: Number(at(r, 'kafka.correlation_id')), time: micros(at(r, 'frame.time_epoch')) };
    if (at(r, 'kafka.request_key') !== '') {
      const res = responses.get(String(frame));
      const topics = at(r, 'kafka.topic_name') === '' ? [] : [...new Set(at(r, 'kafka.topic_name').split(','))];
      const e: Expected & { frame: number } = {
        ...base,
        apiKey: Number(at(r, 'kafka.request_key')),
        version: Number(at(r, 'kafka.request.version')),
        clientId: at(r, 'kafka.client_id'),
        topics,
        answered: res !== undefined,
        errorCode: res ? Number(at(res, 'kafka.error').split(',')[0] || '0') : 0,
        elapsed: res ? delay(at(r, 'frame.time_epoch'), at(res, 'frame.time_epoch')) : 0,
      };
      const diff = DIFFERENCES[frame];
      if (diff?.topics) e.topics = diff.topics;
      if (diff?.answered !== undefined) {
        e.answered = diff.answered;
        const next = rows.find((x) => Number(at(x, 'tcp.stream')) === e.stream && at(x, 'kafka.correlation_id') === String(e.correlationId) && Number(at(x, 'frame.number')) > frame)!;
        e.elapsed = delay(at(r, 'frame.time_epoch'), at(next, 'frame.time_epoch'));
        e.errorCode = diff.errorCode ?? 0;
      }
      out.push(e);
    } else if (at(r, 'kafka.request_frame') === '' && at(r, 'kafka.response_key') === '') {
      // A response tshark could not pair: a lone entry unless one of the differences pairs it.
      const paired = Object.entries(DIFFERENCES).some(([f, d]) => d.answered && out.some((x) => x.frame === Number(f) && x.stream === base.stream && x.correlationId === base.correlationId));
      if (!paired) out.push({ ...base, apiKey: -1, version: -1, clientId: '', topics: [], answered: false, errorCode: 0, elapsed: 0 });
    }
  }
  return out.sort((a, b) => a.stream - b.stream || a.frame - b.frame).map(({ frame: _frame, ...e }) => e);
}

function ours(entries: KafkaEntry[], tcpStream: Map<number, number>): Expected[] {
  return entries
    .map((e) => ({
      stream: tcpStream.get(e.stream)!,
      index: e.index,
      apiKey: e.kafka_api_key,
      version: e.kafka_api_version,
      correlationId: e.kafka_correlation_id,
      clientId: e.kafka_client_id,
      topics: e.kafka_topics,
      answered: e.request !== null && e.response !== null,
      errorCode: e.kafka_error_code,
      time: e.timestamp,
      elapsed: e.elapsed_time,
    }))
    .sort((a, b) => a.stream - b.stream || a.index - b.index)
    .map(({ index: _index, ...e }) => e);
}

describe(`${CAPTURE} against tshark`, () => {
  it('has the same requests, responses and pairing per stream', async () => {
    const entries: KafkaEntry[] = [];
    const d = new KafkaDissector((e) => entries.push(e));
    const { tcpStream } = await feedCapture(CAPTURE, d);
    const expected = tsharkEntries();
    expect(expected.length).toBe(17);
    expect(ours(entries, tcpStream)).toEqual(expected);
    // Generic fields follow the Kafka ones.
    for (const e of entries) {
      expect(e.method).toBe(e.kafka_api_key_name);
      expect(e.path).toBe(e.kafka_topics[0] ?? '');
      expect(e.status_code).toBe(0);
      if (e.request) expect(e.request.body_size).toBe(e.request.body!.length);
    }
    const produce = entries.find((e) => e.kafka_api_version === 3 && e.kafka_correlation_id === 2)!;
    expect(produce.kafka_request_summary).toBe('PRODUCE LB_MAIN_LOG_INPUT[0]');
    expect(d.stats().errors['pair-not-found']).toBe(6);
  });
});

// ---- Byte-exact streams from the protocol guide -------------------------------------------

const i8 = (v: number): number[] => [v & 0xff];
const i16 = (v: number): number[] => [(v >> 8) & 0xff, v & 0xff];
const i32 = (v: number): number[] => [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
const i64 = (v: number): number[] => [...i32(Math.floor(v / 2 ** 32)), ...i32(v >>> 0)];
const uvarint = (v: number): number[] => {
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
};
const str = (s: string | null): number[] => (s === null ? i16(-1) : [...i16(Buffer.byteLength(s)), ...Buffer.from(s)]);
const cstr = (s: string | null): number[] => (s === null ? [0] : [...uvarint(Buffer.byteLength(s) + 1), ...Buffer.from(s)]);
const arr = (items: number[][]): number[] => [...i32(items.length), ...items.flat()];
const carr = (items: number[][]): number[] => [...uvarint(items.length + 1), ...items.flat()];
const TAG = [0];
const UUID = [0xde, 0xad, 0xbe, 0xef, 0, 1, 0, 2, 0, 3, 0, 4, 5, 6, 7, 8];
const frame = (body: number[]): Buffer => Buffer.from([...i32(body.length), ...body]);
const reqHeader = (apiKey: number, version: number, corr: number, clientId: string | null, flex: boolean): number[] => [...i16(apiKey), ...i16(version), ...i32(corr), ...str(clientId), ...(flex ? TAG : [])];
const resHeader = (corr: number, flex: boolean): number[] => [...i32(corr), ...(flex ? TAG : [])];

const records = [9, 9, 9, 9, 9, 9];
const produceV9 = (corr: number, acks: number): Buffer =>
  frame([
    ...reqHeader(0, 9, corr, 'app', true),
    ...cstr(null),
    ...i16(acks),
    ...i32(30000),
    ...carr([
      [...cstr('orders'), ...carr([[...i32(0), ...uvarint(records.length + 1), ...records, ...TAG], [...i32(1), ...uvarint(1), ...TAG]]), ...TAG],
      [...cstr('payments'), ...carr([[...i32(7), 0, ...TAG]]), ...TAG],
    ]),
    ...TAG,
  ]);
const produceV9Response = (corr: number, error: number): Buffer =>
  frame([
    ...resHeader(corr, true),
    ...carr([[...cstr('orders'), ...carr([[...i32(0), ...i16(error), ...i64(5), ...i64(-1), ...i64(0), ...carr([]), ...cstr(null), ...TAG]]), ...TAG]]),
    ...i32(0),
    ...TAG,
  ]);
const produceV3 = (corr: number): Buffer =>
  frame([...reqHeader(0, 3, corr, 'legacy', false), ...str(null), ...i16(-1), ...i32(1000), ...arr([[...str('logs'), ...arr([[...i32(2), ...i32(records.length), ...records]])]])]);
const fetchPartition = (v: number, p: number): number[] => [...i32(p), ...(v >= 9 ? i32(-1) : []), ...i64(100), ...(v >= 12 ? i32(-1) : []), ...(v >= 5 ? i64(0) : []), ...i32(1 << 20), ...(v >= 12 ? TAG : [])];
const fetchRequest = (v: number, corr: number, topic: 'name' | 'id'): Buffer => {
  const flex = v >= 12;
  const t = (parts: number[][]): number[] => (flex ? [...(topic === 'id' ? UUID : cstr('clicks')), ...carr(parts), ...TAG] : [...str('clicks'), ...arr(parts)]);
  return frame([
    ...reqHeader(1, v, corr, 'consumer-1', flex),
    ...(v < 15 ? i32(-1) : []),
    ...i32(500),
    ...i32(1),
    ...(v >= 3 ? i32(1 << 20) : []),
    ...(v >= 4 ? i8(0) : []),
    ...(v >= 7 ? [...i32(0), ...i32(-1)] : []),
    ...(flex ? carr([t([fetchPartition(v, 3), fetchPartition(v, 4)])]) : arr([t([fetchPartition(v, 3), fetchPartition(v, 4)])])),
    ...(v >= 7 ? (flex ? carr([]) : arr([])) : []),
    ...(v >= 11 ? (flex ? cstr('') : str('')) : []),
    ...(flex ? TAG : []),
  ]);
};
const fetchResponse = (v: number, corr: number, top: number, partition: number): Buffer => {
  const flex = v >= 12;
  return frame([
    ...resHeader(corr, flex),
    ...i32(0),
    ...(v >= 7 ? [...i16(top), ...i32(0)] : []),
    ...(flex ? carr([[...(v >= 13 ? UUID : cstr('clicks')), ...carr([[...i32(3), ...i16(partition)]])]]) : arr([[...str('clicks'), ...arr([[...i32(3), ...i16(partition)]])]])),
  ]);
};
const metadataV9 = (corr: number, topics: string[] | null): Buffer =>
  frame([...reqHeader(3, 9, corr, 'admin', true), ...(topics === null ? [0] : carr(topics.map((t) => [...cstr(t), ...TAG]))), 1, 0, 0, ...TAG]);
const metadataV10 = (corr: number): Buffer => frame([...reqHeader(3, 10, corr, 'admin', true), ...carr([[...UUID, ...cstr(null), ...TAG], [...new Array<number>(16).fill(0), ...cstr('named'), ...TAG]]), 1, 0, 0, ...TAG]);
const metadataV1 = (corr: number, topics: string[] | null): Buffer => frame([...reqHeader(3, 1, corr, 'admin', false), ...(topics === null ? i32(-1) : arr(topics.map(str)))]);
const metadataV9Response = (corr: number, topicError: number): Buffer =>
  frame([
    ...resHeader(corr, true),
    ...i32(0),
    ...carr([[...i32(1), ...cstr('broker-1'), ...i32(9092), ...cstr(null), ...TAG]]),
    ...cstr('cluster'),
    ...i32(1),
    ...carr([[...i16(topicError), ...cstr('missing'), 0, ...carr([]), ...i32(0), ...TAG]]),
    ...TAG,
  ]);
const apiVersionsV3 = (corr: number): Buffer => frame([...reqHeader(18, 3, corr, 'app', true), ...cstr('kafka-js'), ...cstr('2.0'), ...TAG]);
/** ApiVersions responses keep header v0 (no tagged fields) in every version. */
const apiVersionsResponse = (corr: number, error: number): Buffer => frame([...resHeader(corr, false), ...i16(error), ...carr([]), ...i32(0), ...TAG]);

type Seg = [TcpDirection, Uint8Array] | [TcpDirection, 'gap', number];

/** Feeds segments as one stream (client = direction 0) and ends it. */
function runStream(segs: Seg[], options: KafkaDissectorOptions = {}, open: StreamOpen = { clientDir: 0 }, dissector?: KafkaDissector): KafkaEntry[] {
  const out: KafkaEntry[] = [];
  const d = dissector ?? new KafkaDissector((e) => out.push(e), options);
  const offsets = [0, 0];
  d.open(1, open);
  let t = 0;
  for (const s of segs) {
    const dir = s[0];
    if (s[1] === 'gap') {
      d.onGap({ stream: 1, dir, offset: offsets[dir]!, length: s[2], reason: 'acked', sec: 1, nsec: t });
      offsets[dir]! += s[2];
      continue;
    }
    const bytes = s[1];
    t += 1000;
    const chunk: TcpChunk = { stream: 1, dir, offset: offsets[dir]!, buf: bytes, start: 0, length: bytes.length, firstSec: 1, firstNsec: t, lastSec: 1, lastNsec: t, midStream: open.clientDir === undefined };
    d.onData(chunk);
    offsets[dir]! += bytes.length;
  }
  for (const dir of [0, 1] as const) d.onEnd({ stream: 1, dir, offset: offsets[dir]!, reason: 'fin', sec: 2, nsec: 0, closed: dir === 1 });
  d.flush();
  return out;
}

describe('hand-made Kafka streams', () => {
  it('reads a flexible Produce v9 with its topics and partitions, and the partition error of the response', () => {
    const [e] = runStream([
      [0, produceV9(7, -1)],
      [1, produceV9Response(7, 6)],
    ]);
    expect(e).toMatchObject({
      kafka_api_key: 0,
      kafka_api_key_name: 'PRODUCE',
      kafka_api_version: 9,
      kafka_correlation_id: 7,
      kafka_client_id: 'app',
      kafka_topics: ['orders', 'payments'],
      kafka_request_summary: 'PRODUCE orders[0,1] payments[7]',
      kafka_error_code: 6,
      failure: 'NOT_LEADER_OR_FOLLOWER (6)',
      method: 'PRODUCE',
      path: 'orders',
      status_code: 0,
      elapsed_time: 1,
    });
    expect(e!.error).toBeUndefined();
    expect(Buffer.from(e!.request!.body!)).toEqual(produceV9(7, -1));
    expect(Buffer.from(e!.response!.body!)).toEqual(produceV9Response(7, 6));
  });

  it('emits Produce with acks=0 at once, complete, without a response; indexes follow request order', () => {
    const out = runStream([
      [0, metadataV9(2, ['orders'])],
      [0, produceV9(3, 0)],
      [1, metadataV9Response(2, 0)],
    ]);
    // Emitted in completion order, indexed in request order.
    expect(out.map((e) => [e.index, e.method, e.response === null, e.error])).toEqual([
      [1, 'PRODUCE', true, undefined],
      [0, 'METADATA', false, undefined],
    ]);
  });

  it('reads classic Produce v3 and Metadata v1 (named and all topics)', () => {
    const out = runStream([
      [0, produceV3(1)],
      [0, metadataV1(2, ['a', 'b'])],
      [0, metadataV1(3, null)],
    ]);
    expect(out.map((e) => e.kafka_request_summary)).toEqual(['PRODUCE logs[2]', 'METADATA a b', 'METADATA *']);
    expect(out.every((e) => e.error === 'pair-not-found')).toBe(true);
  });

  it.each([4, 7, 11, 12, 13, 15])('reads Fetch v%i topics and partitions, and the response error', (v) => {
    const [e] = runStream([
      [0, fetchRequest(v, 40, v >= 13 ? 'id' : 'name')],
      [1, fetchResponse(v, 40, 0, 1)],
    ]);
    const topic = v >= 13 ? 'deadbeef-0001-0002-0003-000405060708' : 'clicks';
    expect(e).toMatchObject({ kafka_api_key_name: 'FETCH', kafka_api_version: v, kafka_client_id: 'consumer-1', kafka_topics: [topic], kafka_request_summary: `FETCH ${topic}[3,4]` });
    // The first partition's error (the response names the topic by id from v13).
    expect(e).toMatchObject({ kafka_error_code: 1, failure: 'OFFSET_OUT_OF_RANGE (1)' });
  });

  it('takes the top-level Fetch error first (v7+)', () => {
    const [e] = runStream([
      [0, fetchRequest(12, 1, 'name')],
      [1, fetchResponse(12, 1, 70, 0)],
    ]);
    expect(e!.failure).toBe('FETCH_SESSION_ID_NOT_FOUND (70)');
  });

  it('reads Metadata v9 and v10 topics and the first topic error', () => {
    const out = runStream([
      [0, metadataV9(5, ['missing'])],
      [1, metadataV9Response(5, 3)],
      [0, metadataV9(6, null)],
      [0, metadataV10(7)],
    ]);
    expect(out[0]).toMatchObject({ kafka_topics: ['missing'], kafka_error_code: 3, failure: 'UNKNOWN_TOPIC_OR_PARTITION (3)' });
    expect(out[1]!.kafka_request_summary).toBe('METADATA *');
    // v10: a topic named by id only shows the id; the all-zero id of a named topic is not shown.
    expect(out[2]!.kafka_topics).toEqual(['deadbeef-0001-0002-0003-000405060708', 'named']);
  });

  it('skips tagged fields in request header v2 and in response header v1', () => {
    // One tagged field (tag 0, 3 bytes) in each header.
    const req = frame([...i16(3), ...i16(9), ...i32(11), ...str('tagger'), 1, 0, 3, 7, 7, 7, ...carr([[...cstr('tagged'), ...TAG]]), 1, 0, 0, ...TAG]);
    const res = frame([...i32(11), 1, 0, 3, 7, 7, 7, ...i32(0), ...carr([]), ...cstr(null), ...i32(1), ...carr([[...i16(29), ...cstr('tagged'), 0, ...carr([]), ...i32(0), ...TAG]]), ...TAG]);
    const [e] = runStream([[0, req], [1, res]]);
    expect(e).toMatchObject({ kafka_client_id: 'tagger', kafka_topics: ['tagged'], kafka_error_code: 29, failure: 'TOPIC_AUTHORIZATION_FAILED (29)' });
  });

  it('reads ApiVersions v3 (request header v2, response header v0) and its error', () => {
    const [e] = runStream([
      [0, apiVersionsV3(9)],
      [1, apiVersionsResponse(9, 35)],
    ]);
    expect(e).toMatchObject({ kafka_api_key_name: 'API_VERSIONS', kafka_api_version: 3, kafka_client_id: 'app', kafka_error_code: 35, failure: 'UNSUPPORTED_VERSION (35)' });
    expect(kafkaFailure(12345)).toBe('KAFKA_ERROR (12345)');
  });

  it('names every API key of the protocol guide', () => {
    expect(KAFKA_API_KEYS.length).toBe(93);
    expect([KAFKA_API_KEYS[0], KAFKA_API_KEYS[1], KAFKA_API_KEYS[3], KAFKA_API_KEYS[18], KAFKA_API_KEYS[36], KAFKA_API_KEYS[68], KAFKA_API_KEYS[92]]).toEqual([
      'PRODUCE', 'FETCH', 'METADATA', 'API_VERSIONS', 'SASL_AUTHENTICATE', 'CONSUMER_GROUP_HEARTBEAT', 'DELETE_SHARE_GROUP_OFFSETS',
    ]);
    for (const n of KAFKA_API_KEYS) expect(n).toMatch(/^[A-Z]+(_[A-Z]+)*$/);
  });

  const client = Buffer.concat([produceV9(1, -1), fetchRequest(12, 2, 'name'), metadataV9(3, ['missing']), apiVersionsV3(4)]);
  const server = Buffer.concat([produceV9Response(1, 0), fetchResponse(12, 2, 0, 0), metadataV9Response(3, 3), apiVersionsResponse(4, 0)]);
  const strip = (es: KafkaEntry[]): unknown[] => es.map(({ timestamp: _t, elapsed_time: _e, ...rest }) => rest);
  const whole = strip(runStream([[0, client], [1, server]]));

  it('pairs pipelined requests by correlation id', () => {
    expect(whole.length).toBe(4);
    expect((whole as KafkaEntry[]).map((e) => [e.kafka_correlation_id, e.method, e.kafka_error_code, e.error])).toEqual([
      [1, 'PRODUCE', 0, undefined],
      [2, 'FETCH', 0, undefined],
      [3, 'METADATA', 3, undefined],
      [4, 'API_VERSIONS', 0, undefined],
    ]);
  });

  it('gives the same entries with the streams split at every byte', () => {
    for (let k = 1; k < client.length; k++) {
      const got = strip(runStream([[0, client.subarray(0, k)], [0, client.subarray(k)], [1, server.subarray(0, k % server.length)], [1, server.subarray(k % server.length)]].filter((s) => (s[1] as Uint8Array).length > 0) as Seg[]));
      expect(got).toEqual(whole);
    }
  });

  it('gives the same entries byte by byte', () => {
    const segs: Seg[] = [];
    for (const b of client) segs.push([0, Uint8Array.of(b)]);
    for (const b of server) segs.push([1, Uint8Array.of(b)]);
    expect(strip(runStream(segs))).toEqual(whole);
  });

  it('infers roles mid-stream, and resyncs on the pending correlation id after a gap', () => {
    const a = produceV9(1, -1);
    const out = runStream(
      [
        [1, apiVersionsResponse(77, 0)], // an answer to a request before the capture
        [0, a],
        [1, produceV9Response(1, 0)],
        [0, metadataV9(2, ['x'])],
        [1, 'gap', 10], // the start of the answer to 2 is missing
        [1, metadataV9Response(2, 0).subarray(10)],
        [0, metadataV9(3, ['y'])],
        [1, metadataV9Response(3, 0)],
      ],
      {},
      { clientDir: undefined },
    );
    expect(out.map((e) => [e.kafka_correlation_id, e.kafka_api_key, e.response !== null, e.error])).toEqual([
      [77, -1, true, 'pair-not-found'],
      [1, 0, true, undefined],
      [2, 3, false, 'pair-not-found'],
      [3, 3, true, undefined],
    ]);
  });

  it('skips a gap inside a frame and flags the entry', () => {
    const req = produceV9(1, -1);
    const out = runStream([
      [0, req.subarray(0, 30)],
      [0, 'gap', 5],
      [0, req.subarray(35)],
      [0, metadataV9(2, ['after'])],
      [1, produceV9Response(1, 0)],
      [1, metadataV9Response(2, 0)],
    ]);
    expect(out.map((e) => [e.method, e.error, e.request?.truncated])).toEqual([
      ['PRODUCE', 'dissection', true],
      ['METADATA', undefined, false],
    ]);
    expect(out[1]!.kafka_topics).toEqual(['after']);
  });

  it('bounds the body it keeps', () => {
    const [e] = runStream([[0, produceV9(1, -1)], [1, produceV9Response(1, 0)]], { maxBodySize: 10 });
    expect(e!.request!.body!.length).toBe(10);
    expect(e!.request!.truncated).toBe(true);
    expect(e!.request!.body_size).toBe(produceV9(1, -1).length);
    expect(e!.kafka_topics).toEqual(['orders', 'payments']); // parsing does not depend on the body bound
  });

  it('bounds the requests waiting per stream', () => {
    const out: KafkaEntry[] = [];
    const d = new KafkaDissector((e) => out.push(e));
    d.open(1, { clientDir: 0 });
    const reqs = Buffer.concat(Array.from({ length: 100 }, (_, i) => metadataV9(i, [`t${i}`])));
    d.onData({ stream: 1, dir: 0, offset: 0, buf: reqs, start: 0, length: reqs.length, firstSec: 1, firstNsec: 0, lastSec: 1, lastNsec: 0, midStream: false });
    // 64 wait; the oldest 36 are given up, in order.
    expect(out.map((e) => [e.kafka_correlation_id, e.error])).toEqual(Array.from({ length: 36 }, (_, i) => [i, 'pair-not-found']));
    const res = metadataV9Response(99, 0);
    d.onData({ stream: 1, dir: 1, offset: 0, buf: res, start: 0, length: res.length, firstSec: 1, firstNsec: 0, lastSec: 1, lastNsec: 0, midStream: false });
    // The answer to the last one ends the wait of the others (brokers answer in order).
    expect(out.length).toBe(100);
    expect(out[99]).toMatchObject({ kafka_correlation_id: 99, index: 99 });
    expect(out[99]!.error).toBeUndefined();
  });

  it('skips a 2 GB frame without buffering it, and follows it', () => {
    const out: KafkaEntry[] = [];
    const d = new KafkaDissector((e) => out.push(e), { maxFrameSize: 0xffffffff });
    const size = 0x7ffffff0;
    const head = Buffer.from([...i32(size), ...reqHeader(0, 3, 5, 'big', false), ...str(null), ...i16(1), ...i32(100), ...arr([[...str('huge'), ...arr([[...i32(0), ...i32(size - 50)]])]])]);
    const block = Buffer.alloc(1 << 20, 7);
    const before = process.memoryUsage().arrayBuffers;
    d.open(1, { clientDir: 0 });
    let offset = 0;
    const push = (buf: Uint8Array): void => {
      d.onData({ stream: 1, dir: 0, offset, buf, start: 0, length: buf.length, firstSec: 1, firstNsec: 0, lastSec: 1, lastNsec: 0, midStream: false });
      offset += buf.length;
    };
    push(head);
    for (let i = 0; i < 64; i++) push(block);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(8 << 20);
    // The rest of the frame is missing: a gap to its end, then the next request.
    d.onGap({ stream: 1, dir: 0, offset, length: size + 4 - offset, reason: 'acked', sec: 1, nsec: 0 });
    offset = size + 4;
    push(metadataV9(6, ['next']));
    d.onEnd({ stream: 1, dir: 0, offset, reason: 'fin', sec: 1, nsec: 0, closed: false });
    d.onEnd({ stream: 1, dir: 1, offset: 0, reason: 'fin', sec: 1, nsec: 0, closed: true });
    expect(out.map((e) => [e.kafka_request_summary, e.error, e.request!.body_size])).toEqual([
      ['PRODUCE huge[0]', 'pair-not-found', size + 4],
      ['METADATA next', 'pair-not-found', metadataV9(6, ['next']).length],
    ]);
    // With the default bound (100 MiB) the same size is not a frame: nothing is read as one.
    const out2 = runStream([[0, head], [0, block]]);
    expect(out2).toEqual([]);
  });
});



describe('through the stream router', () => {
  it.each([CAPTURE, 'ndpi/amqp.pcap', 'ndpi/http.pcapng', 'zeek/redis_set.pcap', 'ndpi/pgsql.pcap'])('%s: kafka entries are those of the dissector fed directly', async (capture) => {
    const direct: KafkaEntry[] = [];
    await feedCapture(capture, new KafkaDissector((e) => direct.push(e)));
    const routed: KafkaEntry[] = [];
    const others: unknown[] = [];
    const router = await routeCapture(capture, () => ({
      protocols: [
        { protocol: HTTP_PROTOCOL, dissector: new HttpDissector((e) => others.push(e)) },
        { protocol: DNS_TCP_PROTOCOL, dissector: new DnsDissector((e) => others.push(e)) },
        { protocol: AMQP_PROTOCOL, dissector: new AmqpDissector((e) => others.push(e)) },
        { protocol: KAFKA_PROTOCOL, dissector: new KafkaDissector((e) => routed.push(e)) },
      ],
    }));
    if (capture === CAPTURE) {
      // Responses alone are not detected: the parts of streams that hold only responses (the
      // reassembler restarts a stream idle for minutes as a new mid-stream join) stay L4 flows
      // unless the stream was claimed before, which also shifts the indexes after them.
      const key = (e: KafkaEntry): string => `${e.stream}/${e.timestamp}/${e.kafka_correlation_id}`;
      const strip = (es: KafkaEntry[]): unknown[] => es.sort((a, b) => key(a).localeCompare(key(b))).map(({ index: _i, ...rest }) => rest);
      // A piece that resumes a stream already claimed goes back to Kafka (the router remembers
      // it); response-only pieces before the stream's first claimed request are lost.
      const lost = direct.filter((e) => e.kafka_api_key < 0 && !direct.some((d) => d.stream === e.stream && d.kafka_api_key >= 0 && d.timestamp < e.timestamp));
      expect(lost.length).toBe(2);
      expect(routed.length).toBe(direct.length - lost.length);
      expect(strip(routed)).toEqual(strip(direct.filter((e) => !lost.includes(e))));
      expect(others).toEqual([]);
    } else {
      expect(routed).toEqual([]);
      expect(router.stats().claimed['kafka'] ?? 0).toBe(0);
    }
  });
});

// ---- Detection -----------------------------------------------------------------------------

/** Records a capture's reassembler events (copies) per stream, to judge or replay them. */
class Recorder implements TcpDissector {
  readonly opens = new Map<number, StreamOpen>();
  readonly events: ({ kind: 'data'; c: TcpChunk } | { kind: 'gap'; g: TcpGap } | { kind: 'end'; e: TcpEnd })[] = [];
  open(stream: number, info: StreamOpen): void {
    this.opens.set(stream, info);
  }
  flush(): void {}
  onData(c: TcpChunk): void {
    const buf = Buffer.from(c.buf.subarray(c.start, c.start + c.length));
    this.events.push({ kind: 'data', c: { ...c, buf, start: 0 } });
  }
  onGap(g: TcpGap): void {
    this.events.push({ kind: 'gap', g: { ...g } });
  }
  onEnd(e: TcpEnd): void {
    this.events.push({ kind: 'end', e: { ...e } });
  }
  /** The contiguous first bytes (up to 4 KiB) of each direction that sent any. */
  firstBytes(): { stream: number; dir: TcpDirection; fromClient: boolean | undefined; bytes: Buffer }[] {
    const acc = new Map<string, { stream: number; dir: TcpDirection; bytes: Buffer; done: boolean }>();
    for (const ev of this.events) {
      if (ev.kind === 'end') continue;
      const { stream, dir } = ev.kind === 'data' ? ev.c : ev.g;
      const key = `${stream}/${dir}`;
      const a = acc.get(key) ?? { stream, dir, bytes: Buffer.alloc(0), done: false };
      acc.set(key, a);
      if (ev.kind === 'gap') a.done = true;
      else if (!a.done && a.bytes.length < 4096) a.bytes = Buffer.concat([a.bytes, ev.c.buf]).subarray(0, 4096);
    }
    return [...acc.values()]
      .filter((a) => a.bytes.length > 0)
      .map((a) => {
        const cd = this.opens.get(a.stream)?.clientDir;
        return { stream: a.stream, dir: a.dir, fromClient: cd === undefined ? undefined : cd === a.dir, bytes: a.bytes };
      });
  }
  replay(d: TcpDissector): void {
    for (const [s, info] of this.opens) d.open(s, info);
    for (const ev of this.events) {
      if (ev.kind === 'data') d.onData(ev.c);
      else if (ev.kind === 'gap') d.onGap(ev.g);
      else d.onEnd(ev.e);
    }
    d.flush();
  }
}

async function record(capture: string): Promise<{ rec: Recorder; tcpStream: Map<number, number> }> {
  const rec = new Recorder();
  const { tcpStream } = await feedCapture(capture, rec);
  return { rec, tcpStream };
}

const OTHER = [
  'ndpi/http.pcapng',
  'ndpi/http2.pcapng',
  'ndpi/amqp.pcap',
  'ndpi/pgsql.pcap',
  'ndpi/mysql.pcapng',
  'ndpi/mongodb.pcap',
  'ndpi/tls_1.3_unidirectional_client.pcapng',
  'zeek/redis_set.pcap',
  'zeek/redis_pipelining-example.pcap',
  'zeek/postgresql_psql-login.pcap',
  'zeek/postgresql_psql-aws-ssl-require.pcap',
  'zeek/mysql_mysql.pcap',
  'zeek/tls_tls13_wolfssl.pcap',
  'zeek/http_pipelined-requests.pcap',
  'illustrated-tls/illustrated-tls13.pcap',
];

describe('detect', () => {
  it('claims the request side of every Kafka stream, at every prefix length judged yes/more consistently', async () => {
    const { rec } = await record(CAPTURE);
    const dirs = rec.firstBytes();
    const yes = dirs.filter((x) => KAFKA_PROTOCOL.detect(x.bytes, x.fromClient) === 'yes');
    // Nine streams, each with requests from the client.
    expect(new Set(yes.map((x) => x.stream)).size).toBe(9);
    for (const x of yes) for (let n = 0; n < x.bytes.length; n++) expect(KAFKA_PROTOCOL.detect(x.bytes.subarray(0, n), x.fromClient)).not.toBe('no');
    // Responses are not claimed.
    for (const x of dirs.filter((y) => y.fromClient === false)) expect(KAFKA_PROTOCOL.detect(x.bytes, x.fromClient)).toBe('no');
  });

  it.each(OTHER)('claims nothing in %s', async (capture) => {
    const { rec } = await record(capture);
    const dirs = rec.firstBytes();
    expect(dirs.length).toBeGreaterThan(0);
    // `more` on everything a direction sent is a `no` for the router; `yes` would be a false claim.
    for (const x of dirs) {
      expect(KAFKA_PROTOCOL.detect(x.bytes, x.fromClient)).not.toBe('yes');
      expect(KAFKA_PROTOCOL.detect(x.bytes, undefined)).not.toBe('yes');
    }
    const no = dirs.filter((x) => KAFKA_PROTOCOL.detect(x.bytes, undefined) === 'no').length;
    expect(no / dirs.length).toBeGreaterThanOrEqual(0.5);
  });

  it('claims no random bytes', () => {
    const rnd = prng(7);
    let yes = 0;
    for (let i = 0; i < 20000; i++) {
      const b = Buffer.alloc(64);
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(rnd() * 256);
      if (KAFKA_PROTOCOL.detect(b, undefined) === 'yes') yes++;
    }
    expect(yes).toBe(0);
  });
});

// ---- Damage ----------------------------------------------------------------------------------


describe('damaged captures', () => {
  const key = (e: KafkaEntry): string => JSON.stringify({ ...e, request: e.request?.body_size, response: e.response?.body_size });

  it('survives truncation, flipped bytes and lost segments, and intact streams still match', async () => {
    const { rec } = await record(CAPTURE);
    const baseline: KafkaEntry[] = [];
    rec.replay(new KafkaDissector((e) => baseline.push(e)));
    const streams = [...rec.opens.keys()];
    const rnd = prng(42);
    for (let round = 0; round < 300; round++) {
      const victim = streams[Math.floor(rnd() * streams.length)]!;
      const mode = round % 3;
      const cutAt = Math.floor(rnd() * rec.events.length);
      const damaged = new Recorder();
      for (const [s, info] of rec.opens) damaged.opens.set(s, info);
      rec.events.forEach((ev, i) => {
        if (ev.kind !== 'data' || ev.c.stream !== victim) {
          damaged.events.push(ev);
          return;
        }
        const c = ev.c;
        const lost = (reason: TcpGap['reason']): void => {
          damaged.events.push({ kind: 'gap', g: { stream: c.stream, dir: c.dir, offset: c.offset, length: c.length, reason, sec: c.firstSec, nsec: c.firstNsec } });
        };
        if (mode === 0 && i >= cutAt) lost('end'); // truncated: the rest of the stream is missing
        else if (mode === 1) {
          const buf = Buffer.from(c.buf);
          for (let k = 0; k < 3; k++) buf[Math.floor(rnd() * buf.length)] = Math.floor(rnd() * 256);
          damaged.events.push({ kind: 'data', c: { ...c, buf } });
        } else if (mode === 2 && rnd() < 0.3) lost('acked');
        else damaged.events.push(ev);
      });
      const got: KafkaEntry[] = [];
      expect(() => damaged.replay(new KafkaDissector((e) => got.push(e)))).not.toThrow();
      expect(got.filter((e) => e.stream !== victim).map(key)).toEqual(baseline.filter((e) => e.stream !== victim).map(key));
    }
  });

  it('survives random bytes in both directions', () => {
    const rnd = prng(3);
    for (let round = 0; round < 200; round++) {
      const segs: Seg[] = [];
      for (let i = 0; i < 20; i++) {
        const b = new Uint8Array(1 + Math.floor(rnd() * 300));
        for (let j = 0; j < b.length; j++) b[j] = rnd() < 0.5 ? 0 : Math.floor(rnd() * 256);
        segs.push([rnd() < 0.5 ? 0 : 1, b]);
        if (rnd() < 0.1) segs.push([rnd() < 0.5 ? 0 : 1, 'gap', Math.floor(rnd() * 1000)]);
      }
      expect(() => runStream(segs, {}, { clientDir: round % 2 === 0 ? 0 : undefined })).not.toThrow();
    }
  });
});
