import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { TcpChunk, TcpDirection, TcpEnd, TcpGap } from '@kubeshark-mcp/capture';
import { GOLDEN_DIR } from '@kubeshark-mcp/testkit';
import { DNS_TCP_PROTOCOL, DnsDissector } from '../src/dns';
import { HTTP_PROTOCOL, HttpDissector } from '../src/http1';
import { KAFKA_PROTOCOL, KafkaDissector } from '../src/kafka';
import { AMQP_PROTOCOL, AmqpDissector, amqpMethod, type AmqpDissectorOptions, type AmqpEntry } from '../src/amqp';
import type { StreamOpen, TcpDissector } from '../src/stream';
import { feedCapture } from './support/feed';
import { prng } from './support/damage';
import { routeCapture } from './support/feed';

/**
 * The AMQP 0-9-1 dissector against tshark's AMQP fields for the shared capture
 * (fixtures/golden/ndpi/amqp.pcap/amqp.psv), then on byte-exact streams built from the
 * AMQP 0-9-1 specification for what the capture lacks (handshake, synchronous methods and
 * their replies, errors), then under damage.
 *
 * What we compare, per tcp.stream in order: every method tshark shows that is not a reply
 * (a reply is part of its request's entry) with its channel, exchange, routing key, queue and
 * reply code, the capture time of its frame, and for content methods the body size of their
 * content header. The capture was joined mid-stream (no handshake) and holds only
 * asynchronous methods (basic.publish, basic.deliver, basic.ack), so pairing is checked on
 * the hand-made streams. No deliberate differences from tshark on this capture.
 */

const CAPTURE = 'ndpi/amqp.pcap';

interface Expected {
  stream: number;
  method: string;
  channel: number;
  exchange: string;
  routingKey: string;
  queue: string;
  replyCode: number;
  time: number;
  bodySize: number;
}

const micros = (epoch: string): number => {
  const [s, f = ''] = epoch.split('.');
  return Number((BigInt(s!) * 1_000_000_000n + BigInt(f.padEnd(9, '0'))) / 1000n);
};

function tsharkCalls(): Expected[] {
  const [head, ...lines] = readFileSync(path.join(GOLDEN_DIR, CAPTURE, 'amqp.psv'), 'utf8').split('\n');
  const cols = head!.split('|');
  const rows = lines.filter((l) => l.trim() !== '').map((l) => l.split('|'));
  const at = (r: string[], name: string): string => r[cols.indexOf(name)] ?? '';
  const list = (r: string[], name: string): string[] => (at(r, name) === '' ? [] : at(r, name).split(','));
  const out: Expected[] = [];
  const lastContent = new Map<string, Expected>();
  for (const r of rows) {
    const stream = Number(at(r, 'tcp.stream'));
    const types = list(r, 'amqp.type');
    const channels = list(r, 'amqp.channel');
    const classes = list(r, 'amqp.method.class');
    const methods = list(r, 'amqp.method.method');
    const sizes = list(r, 'amqp.header.body-size');
    // One method per packet in this capture, so the packet's argument fields are that method's.
    expect(classes.length).toBeLessThanOrEqual(1);
    let m = 0;
    let h = 0;
    types.forEach((t, i) => {
      const channel = Number(channels[i]);
      if (t === '1') {
        const def = amqpMethod(Number(classes[m]), Number(methods[m]));
        m++;
        expect(def).toBeDefined();
        if (/-(ok|empty)$/.test(def!.name)) return;
        const e: Expected = {
          stream,
          method: def!.name,
          channel,
          exchange: at(r, 'amqp.method.arguments.exchange'),
          routingKey: at(r, 'amqp.method.arguments.routing_key'),
          queue: at(r, 'amqp.method.arguments.queue'),
          replyCode: Number(at(r, 'amqp.method.arguments.reply_code') || '0'),
          time: micros(at(r, 'frame.time_epoch')),
          bodySize: 0,
        };
        out.push(e);
        if (def!.content) lastContent.set(`${stream}/${channel}`, e);
      } else if (t === '2') {
        const e = lastContent.get(`${stream}/${channel}`);
        if (e) e.bodySize = Number(sizes[h]);
        h++;
      }
    });
  }
  return out.sort((a, b) => a.stream - b.stream);
}

describe(`${CAPTURE} against tshark`, () => {
  it('has the same methods, channels, exchanges, routing keys and body sizes per stream', async () => {
    const entries: AmqpEntry[] = [];
    const d = new AmqpDissector((e) => entries.push(e));
    const { tcpStream } = await feedCapture(CAPTURE, d);
    const expected = tsharkCalls();
    expect(expected.length).toBe(36);
    const got: Expected[] = entries
      .map((e) => ({ e, s: tcpStream.get(e.stream)! }))
      .sort((a, b) => a.s - b.s || a.e.index - b.e.index)
      .map(({ e, s }) => ({
        stream: s,
        method: e.amqp_method,
        channel: e.amqp_channel,
        exchange: e.amqp_exchange,
        routingKey: e.amqp_routing_key,
        queue: e.amqp_queue,
        replyCode: e.amqp_reply_code,
        time: e.timestamp,
        bodySize: e.request?.body_size ?? 0,
      }));
    expect(got).toEqual(expected);
    for (const e of entries) {
      expect(e.error).toBeUndefined();
      expect(e.response).toBeNull();
      expect(e.method).toBe(e.amqp_method);
      if (e.amqp_method !== 'basic.ack') {
        expect(e.path).toBe(`${e.amqp_exchange}/${e.amqp_routing_key}`);
        // Whole bodies, kept byte for byte.
        expect(e.request!.body!.length).toBe(e.request!.body_size);
        expect(e.request!.truncated).toBe(false);
      }
    }
    const json = entries.find((e) => e.amqp_routing_key === 'worker.heartbeat')!;
    expect(json.request!.headers).toContainEqual(['content-type', 'application/json']);
    expect(JSON.parse(Buffer.from(json.request!.body!).toString('utf8'))).toHaveProperty('hostname');
  });
});

// ---- Byte-exact streams from the AMQP 0-9-1 specification ----------------------------------

const u8 = (v: number): number[] => [v & 0xff];
const u16 = (v: number): number[] => [(v >> 8) & 0xff, v & 0xff];
const u32 = (v: number): number[] => [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
const u64 = (v: number): number[] => [...u32(Math.floor(v / 2 ** 32)), ...u32(v >>> 0)];
const sstr = (s: string): number[] => [Buffer.byteLength(s), ...Buffer.from(s)];
const lstr = (s: string): number[] => [...u32(Buffer.byteLength(s)), ...Buffer.from(s)];
const table = (fields: [string, number[]][]): number[] => {
  const body = fields.flatMap(([k, v]) => [...sstr(k), ...v]);
  return [...u32(body.length), ...body];
};
const frame = (type: number, channel: number, payload: number[]): number[] => [type, ...u16(channel), ...u32(payload.length), ...payload, 0xce];
const method = (channel: number, classId: number, methodId: number, args: number[] = []): number[] => frame(1, channel, [...u16(classId), ...u16(methodId), ...args]);
const PROTOCOL = [...Buffer.from('AMQP'), 0, 0, 9, 1];
const contentHeader = (channel: number, bodySize: number, contentType: string, headers: [string, number[]][]): number[] =>
  frame(2, channel, [...u16(60), ...u16(0), ...u64(bodySize), ...u16(0x8000 | 0x2000 | 0x1000), ...sstr(contentType), ...table(headers), ...u8(2)]);
const body = (channel: number, bytes: number[]): number[] => frame(3, channel, bytes);
const B = (...parts: number[][]): Buffer => Buffer.from(parts.flat());

const payload = [...Buffer.from('{"order":42,"items":["a","b","c"]}')];
/** A client session: handshake, topology, a publish with a two-frame body, a failed passive declare, close. */
const clientBytes = [
  B(PROTOCOL),
  B(method(0, 10, 11, [...table([['product', [0x53, ...lstr('test')]]]), ...sstr('PLAIN'), ...lstr('\0guest\0guest'), ...sstr('en_US')])),
  B(method(0, 10, 31, [...u16(2047), ...u32(131072), ...u16(60)]), method(0, 10, 40, [...sstr('/'), ...sstr(''), 0])),
  B(method(1, 20, 10, sstr(''))),
  B(method(1, 40, 10, [...u16(0), ...sstr('orders-x'), ...sstr('topic'), 0b00010, ...table([])])),
  B(method(1, 50, 10, [...u16(0), ...sstr(''), 0b00100, ...table([['x-message-ttl', [0x49, ...u32(60000)]]])])),
  B(method(1, 50, 20, [...u16(0), ...sstr('amq.gen-abc'), ...sstr('orders-x'), ...sstr('orders.created'), 0, ...table([])])),
  B(method(1, 60, 40, [...u16(0), ...sstr('orders-x'), ...sstr('orders.created'), 0b01]), contentHeader(1, payload.length, 'application/json', [['trace', [0x53, ...lstr('t-1')]]]), body(1, payload.slice(0, 10)), body(1, payload.slice(10))),
  B(method(1, 50, 10, [...u16(0), ...sstr('missing'), 0b00001, ...table([])])),
  B(method(1, 20, 41)),
  B(method(0, 10, 50, [...u16(200), ...sstr('Goodbye'), ...u16(0), ...u16(0)])),
];
const serverBytes = [
  B(method(0, 10, 10, [0, 9, ...table([['product', [0x53, ...lstr('RabbitMQ')]]]), ...lstr('PLAIN AMQPLAIN'), ...lstr('en_US')])),
  B(method(0, 10, 30, [...u16(2047), ...u32(131072), ...u16(60)])),
  B(method(0, 10, 41, sstr(''))),
  B(method(1, 20, 11, lstr(''))),
  B(method(1, 40, 11)),
  B(method(1, 50, 11, [...sstr('amq.gen-abc'), ...u32(0), ...u32(0)])),
  B(method(1, 50, 21)),
  B(method(1, 60, 60, [...sstr('ctag-1'), ...u64(1), 0, ...sstr('orders-x'), ...sstr('orders.created')]), contentHeader(1, payload.length, 'application/json', []), body(1, payload)),
  B(method(1, 20, 40, [...u16(404), ...sstr("NOT_FOUND - no queue 'missing' in vhost '/'"), ...u16(50), ...u16(10)])),
  B(method(0, 10, 51)),
];

type Seg = [TcpDirection, Uint8Array] | [TcpDirection, 'gap', number];

/** Interleaves client and server messages in the order a real session has them. */
function session(): Seg[] {
  const order: [TcpDirection, number][] = [
    [0, 0], [1, 0], [0, 1], [1, 1], [0, 2], [1, 2], [0, 3], [1, 3], [0, 4], [1, 4], [0, 5], [1, 5], [0, 6], [1, 6], [0, 7], [1, 7], [0, 8], [1, 8], [0, 9], [0, 10], [1, 9],
  ];
  return order.map(([dir, i]) => [dir, (dir === 0 ? clientBytes : serverBytes)[i]!]);
}

function runStream(segs: Seg[], options: AmqpDissectorOptions = {}, open: StreamOpen = { clientDir: 0 }): AmqpEntry[] {
  const out: AmqpEntry[] = [];
  const d = new AmqpDissector((e) => out.push(e), options);
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

const summary = (es: AmqpEntry[]): unknown[] => es.map((e) => [e.amqp_method, e.amqp_channel, e.path, e.status_code, e.response !== null, e.error, e.failure]);

describe('hand-made AMQP streams', () => {
  const whole = runStream(session());

  it('pairs synchronous methods with their replies per channel, and emits asynchronous ones alone', () => {
    expect(summary(whole)).toEqual([
      ['connection.start', 0, '', 0, true, undefined, undefined],
      ['connection.tune', 0, '', 0, true, undefined, undefined],
      ['connection.open', 0, '', 0, true, undefined, undefined],
      ['channel.open', 1, '', 0, true, undefined, undefined],
      ['exchange.declare', 1, 'orders-x', 0, true, undefined, undefined],
      ['queue.declare', 1, 'amq.gen-abc', 0, true, undefined, undefined],
      ['queue.bind', 1, 'amq.gen-abc', 0, true, undefined, undefined],
      ['basic.publish', 1, 'orders-x/orders.created', 0, false, undefined, undefined],
      ['basic.deliver', 1, 'orders-x/orders.created', 0, false, undefined, undefined],
      // The passive declare of a missing queue is answered by the channel's close.
      ['queue.declare', 1, 'missing', 404, true, undefined, "404 NOT_FOUND - no queue 'missing' in vhost '/'"],
      ['channel.close', 1, '', 404, true, undefined, "404 NOT_FOUND - no queue 'missing' in vhost '/'"],
      ['connection.close', 0, '', 200, true, undefined, undefined],
    ]);
  });

  it('reads exchange, routing key, queue, content properties and a multi-frame body', () => {
    const declare = whole[5]!;
    // The server named the queue: the reply's name is the entry's.
    expect(declare).toMatchObject({ amqp_queue: 'amq.gen-abc', amqp_exchange: '', elapsed_time: 1 });
    expect(declare.request!.headers).toContainEqual(['arguments', '{x-message-ttl: 60000}']);
    expect(declare.response!.headers).toEqual([['queue', 'amq.gen-abc'], ['message-count', '0'], ['consumer-count', '0']]);
    expect(whole[6]).toMatchObject({ amqp_queue: 'amq.gen-abc', amqp_exchange: 'orders-x', amqp_routing_key: 'orders.created' });
    const publish = whole[7]!;
    expect(publish).toMatchObject({ amqp_exchange: 'orders-x', amqp_routing_key: 'orders.created', amqp_queue: '', status_code: 0 });
    expect(publish.request!.headers).toEqual([
      ['exchange', 'orders-x'], ['routing-key', 'orders.created'], ['mandatory', '1'], ['immediate', '0'],
      ['content-type', 'application/json'], ['headers', '{trace: "t-1"}'], ['delivery-mode', '2'],
    ]);
    expect(Buffer.from(publish.request!.body!)).toEqual(Buffer.from(payload));
    expect(publish.request).toMatchObject({ body_size: payload.length, truncated: false });
    const close = whole[10]!;
    expect(close).toMatchObject({ amqp_reply_code: 404, amqp_reply_text: "NOT_FOUND - no queue 'missing' in vhost '/'" });
  });

  it('gives the same entries with the streams split at every byte', () => {
    const strip = (es: AmqpEntry[]): unknown[] => es.map(({ timestamp: _t, elapsed_time: _e, ...rest }) => rest);
    /** The session with direction `dir` cut in two at its byte `k`. */
    const splitAt = (segs: Seg[], dir: TcpDirection, k: number): Seg[] => {
      let offset = 0;
      return segs.flatMap((seg): Seg[] => {
        if (seg[0] !== dir || seg[1] === 'gap') return [seg];
        const b = seg[1];
        const at = k - offset;
        offset += b.length;
        return at > 0 && at < b.length ? [[dir, b.subarray(0, at)], [dir, b.subarray(at)]] : [seg];
      });
    };
    const base = strip(whole);
    const clientLen = clientBytes.reduce((n, b) => n + b.length, 0);
    const serverLen = serverBytes.reduce((n, b) => n + b.length, 0);
    for (let k = 1; k < Math.max(clientLen, serverLen); k++) {
      expect(strip(runStream(splitAt(splitAt(session(), 0, k), 1, k)))).toEqual(base);
    }
    // Byte by byte, each message in its turn.
    const bytes: Seg[] = session().flatMap(([dir, b]) => [...(b as Uint8Array)].map((x): Seg => [dir, Uint8Array.of(x)]));
    expect(strip(runStream(bytes))).toEqual(base);
  });

  it('emits no-wait requests at once, and basic.get with get-ok content or get-empty', () => {
    const out = runStream([
      [0, B(method(2, 50, 10, [...u16(0), ...sstr('fast'), 0b10000, ...table([])]))],
      [0, B(method(2, 60, 70, [...u16(0), ...sstr('jobs'), 0]))],
      [1, B(method(2, 60, 71, [...u64(9), 0, ...sstr(''), ...sstr('jobs'), ...u32(3)]), contentHeader(2, 3, 'text/plain', []), body(2, [0x61, 0x62, 0x63]))],
      [0, B(method(2, 60, 70, [...u16(0), ...sstr('jobs'), 0]))],
      [1, B(method(2, 60, 72, sstr('')))],
      [0, B(method(2, 90, 10))],
      [0, B(method(2, 85, 10, [0]))],
    ]);
    expect(summary(out)).toEqual([
      ['queue.declare', 2, 'fast', 0, false, undefined, undefined],
      ['basic.get', 2, 'jobs', 0, true, undefined, undefined],
      ['basic.get', 2, 'jobs', 0, true, undefined, undefined],
      ['tx.select', 2, '', 0, false, 'pair-not-found', undefined],
      ['confirm.select', 2, '', 0, false, 'pair-not-found', undefined],
    ]);
    expect(Buffer.from(out[1]!.response!.body!).toString()).toBe('abc');
    expect(out[1]!.amqp_routing_key).toBe('jobs');
  });

  it('indexes calls in request order while a synchronous call waits for its reply', () => {
    const out = runStream([
      [0, B(method(1, 50, 10, [...u16(0), ...sstr('slow'), 0, ...table([])]))],
      [0, B(method(2, 60, 40, [...u16(0), ...sstr('x'), ...sstr('k'), 0]), contentHeader(2, 0, 'a/b', []))],
      [1, B(method(1, 50, 11, [...sstr('slow'), ...u32(5), ...u32(1)]))],
    ]);
    expect(out.map((e) => [e.index, e.amqp_method, e.amqp_channel])).toEqual([
      [1, 'basic.publish', 2],
      [0, 'queue.declare', 1],
    ]);
  });

  it('reports basic.return with its reply code', () => {
    const [e] = runStream([[1, B(method(1, 60, 50, [...u16(312), ...sstr('NO_ROUTE'), ...sstr('x'), ...sstr('nowhere')]), contentHeader(1, 0, 'text/plain', []))]]);
    expect(e).toMatchObject({ amqp_method: 'basic.return', status_code: 312, failure: '312 NO_ROUTE', path: 'x/nowhere' });
  });

  it('skips a gap inside a body frame and flags the message; resyncs after a gap elsewhere', () => {
    const pub = B(method(1, 60, 40, [...u16(0), ...sstr('e'), ...sstr('k'), 0]), contentHeader(1, 100, 'text/plain', []), body(1, new Array<number>(100).fill(0x41)));
    const bodyStart = pub.length - 101;
    const next = B(method(1, 60, 40, [...u16(0), ...sstr('e'), ...sstr('k2'), 0]), contentHeader(1, 1, 'text/plain', []), body(1, [0x42]));
    const out = runStream([
      [0, pub.subarray(0, bodyStart + 10)],
      [0, 'gap', 20],
      [0, pub.subarray(bodyStart + 30)],
      [0, next.subarray(0, 5)],
      [0, 'gap', 3], // inside the next method frame's header: resync
      [0, next.subarray(8)],
      [0, next],
    ]);
    expect(out.map((e) => [e.amqp_routing_key, e.error, e.request!.truncated, e.request!.body_size])).toEqual([
      ['k', 'dissection', true, 100],
      ['k2', undefined, false, 1],
    ]);
  });

  it('bounds the body it keeps, and streams a huge body without buffering it', () => {
    const [e] = runStream([[0, B(method(1, 60, 40, [...u16(0), ...sstr('e'), ...sstr('k'), 0]), contentHeader(1, payload.length, 'a/b', []), body(1, payload))]], { maxBodySize: 5 });
    expect(e!.request).toMatchObject({ body_size: payload.length, truncated: true });
    expect(e!.request!.body!.length).toBe(5);

    const out: AmqpEntry[] = [];
    const d = new AmqpDissector((x) => out.push(x), { maxFrameSize: 0xffffffff });
    const size = 0x7ffffff0;
    const head = B(method(1, 60, 40, [...u16(0), ...sstr('e'), ...sstr('big'), 0]), contentHeader(1, size, 'a/b', []), [3, ...u16(1), ...u32(size)]);
    const block = Buffer.alloc(1 << 20, 7);
    d.open(1, { clientDir: 0 });
    let offset = 0;
    const push = (buf: Uint8Array): void => {
      d.onData({ stream: 1, dir: 0, offset, buf, start: 0, length: buf.length, firstSec: 1, firstNsec: 0, lastSec: 1, lastNsec: 0, midStream: false });
      offset += buf.length;
    };
    const before = process.memoryUsage().arrayBuffers;
    push(head);
    for (let i = 0; i < 64; i++) push(block);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(8 << 20);
    d.onEnd({ stream: 1, dir: 0, offset, reason: 'fin', sec: 1, nsec: 0, closed: false });
    d.onEnd({ stream: 1, dir: 1, offset: 0, reason: 'fin', sec: 1, nsec: 0, closed: true });
    expect(out.map((x) => [x.amqp_routing_key, x.error, x.request!.body!.length, x.request!.truncated])).toEqual([['big', 'dissection', 64 * 1024, true]]);
    // With the default bound (16 MiB) the same size is not a frame.
    expect(runStream([[0, B([3, ...u16(1), ...u32(size)])], [0, block]])).toEqual([]);
  });

  it('bounds the messages and requests in progress per connection, whatever the number of channels', () => {
    const out: AmqpEntry[] = [];
    const d = new AmqpDissector((e) => out.push(e));
    d.open(1, { clientDir: 0 });
    let offset = 0;
    const push = (dir: TcpDirection, bytes: Buffer): void => {
      d.onData({ stream: 1, dir, offset: dir === 0 ? offset : 0, buf: bytes, start: 0, length: bytes.length, firstSec: 1, firstNsec: 0, lastSec: 1, lastNsec: 0, midStream: false });
      if (dir === 0) offset += bytes.length;
    };
    // 200 channels each start a 1 MB message and send 500 bytes of it; 200 more wait on queue.declare.
    for (let ch = 1; ch <= 200; ch++) push(0, B(method(ch, 60, 40, [...u16(0), ...sstr('x'), ...sstr(`k${ch}`), 0]), contentHeader(ch, 1 << 20, 'a/b', []), body(ch, new Array<number>(500).fill(1))));
    expect(out.length).toBe(200 - 16);
    expect(out.every((e) => e.error === 'dissection' && e.request!.truncated && e.request!.body!.length === 500)).toBe(true);
    // The oldest go first.
    expect(out[0]!.amqp_routing_key).toBe('k1');
    for (let ch = 201; ch <= 400; ch++) push(0, B(method(ch, 50, 10, [...u16(0), ...sstr(`q${ch}`), 0, ...table([])])));
    expect(out.length).toBe(200 - 16 + 200 - 64);
    expect(out[out.length - 1]).toMatchObject({ amqp_queue: 'q336', error: 'pair-not-found' });
    d.onEnd({ stream: 1, dir: 0, offset, reason: 'fin', sec: 1, nsec: 0, closed: false });
    d.onEnd({ stream: 1, dir: 1, offset: 0, reason: 'fin', sec: 1, nsec: 0, closed: true });
    expect(out.length).toBe(400);
    expect(new Set(out.map((e) => e.index)).size).toBe(400);
  });

  it('names every method of every class', () => {
    const names = [
      [10, 10, 'connection.start'], [10, 51, 'connection.close-ok'], [20, 40, 'channel.close'], [40, 10, 'exchange.declare'], [40, 51, 'exchange.unbind-ok'],
      [50, 10, 'queue.declare'], [50, 51, 'queue.unbind-ok'], [60, 40, 'basic.publish'], [60, 60, 'basic.deliver'], [60, 120, 'basic.nack'],
      [85, 10, 'confirm.select'], [90, 31, 'tx.rollback-ok'],
    ] as const;
    for (const [c, m, n] of names) expect(amqpMethod(c, m)?.name).toBe(n);
    expect(amqpMethod(60, 40)).toEqual({ name: 'basic.publish', synchronous: false, content: true });
    expect(amqpMethod(50, 10)?.synchronous).toBe(true);
    expect(amqpMethod(60, 41)).toBeUndefined();
  });
});



describe('through the stream router', () => {
  it.each([CAPTURE, 'ndpi/kafka.pcapng', 'ndpi/http.pcapng', 'zeek/redis_set.pcap', 'ndpi/pgsql.pcap'])('%s: amqp entries are those of the dissector fed directly', async (capture) => {
    const direct: AmqpEntry[] = [];
    await feedCapture(capture, new AmqpDissector((e) => direct.push(e)));
    const routed: AmqpEntry[] = [];
    const others: unknown[] = [];
    const router = await routeCapture(capture, () => ({
      protocols: [
        { protocol: HTTP_PROTOCOL, dissector: new HttpDissector((e) => others.push(e)) },
        { protocol: DNS_TCP_PROTOCOL, dissector: new DnsDissector((e) => others.push(e)) },
        { protocol: KAFKA_PROTOCOL, dissector: new KafkaDissector((e) => others.push(e)) },
        { protocol: AMQP_PROTOCOL, dissector: new AmqpDissector((e) => routed.push(e)) },
      ],
    }));
    const key = (e: AmqpEntry): string => `${e.stream}/${e.index}`;
    if (capture === CAPTURE) {
      expect(routed.length).toBeGreaterThan(0);
      expect(routed.sort((a, b) => key(a).localeCompare(key(b)))).toEqual(direct.sort((a, b) => key(a).localeCompare(key(b))));
      expect(others).toEqual([]);
    } else {
      expect(routed).toEqual([]);
      expect(router.stats().claimed['amqp'] ?? 0).toBe(0);
    }
  });
});

// ---- Detection -----------------------------------------------------------------------------

class Recorder implements TcpDissector {
  readonly opens = new Map<number, StreamOpen>();
  readonly events: ({ kind: 'data'; c: TcpChunk } | { kind: 'gap'; g: TcpGap } | { kind: 'end'; e: TcpEnd })[] = [];
  open(stream: number, info: StreamOpen): void {
    this.opens.set(stream, info);
  }
  flush(): void {}
  onData(c: TcpChunk): void {
    this.events.push({ kind: 'data', c: { ...c, buf: Buffer.from(c.buf.subarray(c.start, c.start + c.length)), start: 0 } });
  }
  onGap(g: TcpGap): void {
    this.events.push({ kind: 'gap', g: { ...g } });
  }
  onEnd(e: TcpEnd): void {
    this.events.push({ kind: 'end', e: { ...e } });
  }
  firstBytes(): { stream: number; fromClient: boolean | undefined; bytes: Buffer }[] {
    const acc = new Map<string, { stream: number; dir: TcpDirection; bytes: Buffer; done: boolean }>();
    for (const ev of this.events) {
      if (ev.kind === 'end') continue;
      const { stream, dir } = ev.kind === 'data' ? ev.c : ev.g;
      const a = acc.get(`${stream}/${dir}`) ?? { stream, dir, bytes: Buffer.alloc(0), done: false };
      acc.set(`${stream}/${dir}`, a);
      if (ev.kind === 'gap') a.done = true;
      else if (!a.done && a.bytes.length < 4096) a.bytes = Buffer.concat([a.bytes, ev.c.buf]).subarray(0, 4096);
    }
    return [...acc.values()]
      .filter((a) => a.bytes.length > 0)
      .map((a) => {
        const cd = this.opens.get(a.stream)?.clientDir;
        return { stream: a.stream, fromClient: cd === undefined ? undefined : cd === a.dir, bytes: a.bytes };
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

async function record(capture: string): Promise<Recorder> {
  const rec = new Recorder();
  await feedCapture(capture, rec);
  return rec;
}

const OTHER = [
  'ndpi/http.pcapng',
  'ndpi/http2.pcapng',
  'ndpi/kafka.pcapng',
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
  it('claims every stream of the AMQP capture (joined mid-stream) from its first frames', async () => {
    const rec = await record(CAPTURE);
    const dirs = rec.firstBytes();
    expect(new Set(dirs.filter((x) => AMQP_PROTOCOL.detect(x.bytes, x.fromClient) === 'yes').map((x) => x.stream)).size).toBe(3);
  });

  it('claims a client by its protocol header and a server by connection.start, at every prefix', () => {
    const c = Buffer.concat(clientBytes);
    const s = Buffer.concat(serverBytes);
    expect(AMQP_PROTOCOL.detect(c, true)).toBe('yes');
    expect(AMQP_PROTOCOL.detect(s, false)).toBe('yes');
    for (let n = 0; n < 8; n++) expect(AMQP_PROTOCOL.detect(c.subarray(0, n), true)).toBe('more');
    const first = serverBytes[0]!.length;
    for (let n = 0; n < first; n++) expect(AMQP_PROTOCOL.detect(s.subarray(0, n), false)).toBe('more');
    expect(AMQP_PROTOCOL.detect(Buffer.from('AMQP\x00\x01\x00\x00'), true)).toBe('no'); // AMQP 1.0
    expect(AMQP_PROTOCOL.detect(s, true)).toBe('no'); // a client does not start with a frame
  });

  it.each(OTHER)('claims nothing in %s', async (capture) => {
    const rec = await record(capture);
    const dirs = rec.firstBytes();
    expect(dirs.length).toBeGreaterThan(0);
    for (const x of dirs) {
      expect(AMQP_PROTOCOL.detect(x.bytes, x.fromClient)).not.toBe('yes');
      expect(AMQP_PROTOCOL.detect(x.bytes, undefined)).not.toBe('yes');
    }
    const no = dirs.filter((x) => AMQP_PROTOCOL.detect(x.bytes, undefined) === 'no').length;
    expect(no / dirs.length).toBeGreaterThanOrEqual(0.5);
  });

  it('claims no random bytes', () => {
    const rnd = prng(11);
    let yes = 0;
    for (let i = 0; i < 20000; i++) {
      const b = Buffer.alloc(64);
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(rnd() * 256);
      if (AMQP_PROTOCOL.detect(b, undefined) === 'yes') yes++;
    }
    expect(yes).toBe(0);
  });
});

// ---- Damage ----------------------------------------------------------------------------------


describe('damaged captures', () => {
  const key = (e: AmqpEntry): string => JSON.stringify({ ...e, request: e.request?.body_size, response: e.response?.body_size });

  it('survives truncation, flipped bytes and lost segments, and intact streams still match', async () => {
    const rec = await record(CAPTURE);
    const baseline: AmqpEntry[] = [];
    rec.replay(new AmqpDissector((e) => baseline.push(e)));
    const streams = [...rec.opens.keys()];
    const rnd = prng(5);
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
        if (mode === 0 && i >= cutAt) lost('end');
        else if (mode === 1) {
          const buf = Buffer.from(c.buf);
          for (let k = 0; k < 3; k++) buf[Math.floor(rnd() * buf.length)] = Math.floor(rnd() * 256);
          damaged.events.push({ kind: 'data', c: { ...c, buf } });
        } else if (mode === 2 && rnd() < 0.3) lost('acked');
        else damaged.events.push(ev);
      });
      const got: AmqpEntry[] = [];
      expect(() => damaged.replay(new AmqpDissector((e) => got.push(e)))).not.toThrow();
      expect(got.filter((e) => e.stream !== victim).map(key)).toEqual(baseline.filter((e) => e.stream !== victim).map(key));
      // Lost segments never make up entries: the victim's entries are at most its baseline count plus interrupted content.
      expect(got.filter((e) => e.stream === victim).length).toBeLessThanOrEqual(baseline.filter((e) => e.stream === victim).length * 2);
    }
  });

  it('survives random bytes and gaps in both directions', () => {
    const rnd = prng(9);
    for (let round = 0; round < 200; round++) {
      const segs: Seg[] = [];
      for (let i = 0; i < 20; i++) {
        // Random bytes, sometimes spliced with real frames so the parser gets past framing.
        const real = rnd() < 0.5 ? Buffer.concat(rnd() < 0.5 ? clientBytes : serverBytes) : Buffer.alloc(0);
        const b = Buffer.alloc(1 + Math.floor(rnd() * 300));
        for (let j = 0; j < b.length; j++) b[j] = Math.floor(rnd() * 256);
        const mixed = Buffer.concat([real.subarray(0, Math.floor(rnd() * real.length)), b]);
        for (let k = 0; k < 4 && mixed.length > 0; k++) mixed[Math.floor(rnd() * mixed.length)] = Math.floor(rnd() * 256);
        segs.push([rnd() < 0.5 ? 0 : 1, mixed]);
        if (rnd() < 0.1) segs.push([rnd() < 0.5 ? 0 : 1, 'gap', Math.floor(rnd() * 1000)]);
      }
      expect(() => runStream(segs, {}, { clientDir: round % 2 === 0 ? 0 : undefined })).not.toThrow();
    }
  });
});
