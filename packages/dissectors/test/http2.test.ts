import zlib from 'node:zlib';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { TcpChunk, TcpDirection, TcpEnd, TcpEndReason, TcpGap } from '@kubeshark-mcp/capture';
import { GOLDEN_DIR } from '@kubeshark-mcp/testkit';
import type { HeaderList } from '../src/entry';
import { HTTP_PROTOCOL, HttpDissector, type HttpEntry, type HttpTime } from '../src/http1';
import { StreamRouter } from '../src/router';
import { HTTP2_ERROR_NAMES, HTTP2_PREFACE, HTTP2_PROTOCOL, Http2Dissector, type Http2DissectorOptions, type Http2Entry } from '../src/http2';
import type { StreamOpen, TcpDissector } from '../src/stream';
import { feedCapture } from './support/feed';
import { prng } from './support/damage';
import { HTTP2_CAPTURES } from './support/captures';

/**
 * The HTTP/2 dissector against tshark's HTTP/2 frames for the same captures
 * (fixtures/golden/<capture>/http2-frames.psv, written by scripts/golden-http2.sh), then
 * behaviour by behaviour on hand-made frames, then robustness on damaged captures.
 *
 * What tshark reports and how we compare: one row per HTTP/2 frame with its stream id, type,
 * flags, decoded header fields (a block split over CONTINUATION frames shows each fragment's
 * fields on its own frame) and the gRPC message lengths it parsed from DATA frames. Per
 * tcp.stream and HTTP/2 stream we rebuild: method, path, authority and status (the first
 * request / response fields), every header field each side sent in order (our headers then
 * trailers), grpc-status, the gRPC message lengths of each side, the DATA payload bytes of each
 * side (padding excluded), the RST_STREAM error code, and the time of the frame that carried
 * END_STREAM on each side (ours: the last byte of that frame), to the nanosecond.
 *
 * One deliberate difference: a stream ends for us at RST_STREAM (RFC 9113 §5.1: the stream is
 * closed; the frames the peer had in flight are discarded by the receiver), so frames of a
 * stream after its RST_STREAM are left out of tshark's view too. In dns_over_https.pcap the
 * client cancels stream 7 and the server's response, sent before it saw the RST, arrives after
 * it: tshark shows that response, we report the call as `RST_STREAM CANCEL` without one.
 */

const GOLDEN = HTTP2_CAPTURES;

interface FrameRow {
  frame: number;
  time: string;
  tcp: number;
  srcPort: number;
  sid: number;
  type: number;
  flags: number;
  length: number;
  padLength: number;
  headers: HeaderList;
  rstError: string;
  grpcLengths: number[];
}

function loadFrames(capture: string): FrameRow[] {
  const [head, ...lines] = readFileSync(path.join(GOLDEN_DIR, capture, 'http2-frames.psv'), 'utf8').split('\n');
  const cols = head!.split('|');
  const at = (f: string[], name: string): string => f[cols.indexOf(name)] ?? '';
  return lines
    .filter((l) => l.trim() !== '')
    .map((l) => l.split('|'))
    .map((f) => ({
      frame: Number(at(f, 'frame')),
      time: at(f, 'time'),
      tcp: Number(at(f, 'tcp_stream')),
      srcPort: Number(at(f, 'src_port')),
      sid: at(f, 'stream_id') === '' ? -1 : Number(at(f, 'stream_id')),
      type: at(f, 'type') === '' ? -1 : Number(at(f, 'type')),
      flags: Number(at(f, 'flags') || '0'),
      length: Number(at(f, 'length') || '0'),
      padLength: Number(at(f, 'pad_length') || '0'),
      headers: at(f, 'headers') === '' ? [] : (JSON.parse(at(f, 'headers')) as HeaderList),
      rstError: at(f, 'rst_error'),
      grpcLengths: at(f, 'grpc_lengths') === '' ? [] : at(f, 'grpc_lengths').split(',').map(Number),
    }));
}

/** What we compare per HTTP/2 stream. */
interface StreamView {
  key: string;
  method: string;
  path: string;
  authority: string;
  status: number;
  requestFields: HeaderList;
  responseFields: HeaderList;
  grpcStatus: string;
  requestGrpc: number[];
  responseGrpc: number[];
  requestBody: number;
  responseBody: number;
  requestEnd: string;
  responseEnd: string;
  rst: string;
}

const field = (h: HeaderList, name: string): string => h.find(([k]) => k === name)?.[1] ?? '';
const lastField = (h: HeaderList, name: string): string => h.filter(([k]) => k === name).pop()?.[1] ?? '';
const fmt = (t: HttpTime | null): string => (t ? `${t.sec}.${String(t.nsec).padStart(9, '0')}` : '');

function tsharkStreams(rows: FrameRow[]): StreamView[] {
  // The client of each connection is the sender of the preface (tshark's "Magic" row).
  const clientPort = new Map<number, number>();
  for (const r of rows) if (r.type === -1 && !clientPort.has(r.tcp)) clientPort.set(r.tcp, r.srcPort);
  const views = new Map<string, StreamView>();
  const reset = new Set<string>();
  for (const r of rows) {
    if (r.sid <= 0) continue;
    const key = `${r.tcp}/${r.sid}`;
    if (reset.has(key)) continue; // see the deliberate difference above
    if (r.type === 3) reset.add(key);
    let v = views.get(key);
    if (!v) {
      v = { key, method: '', path: '', authority: '', status: 0, requestFields: [], responseFields: [], grpcStatus: '', requestGrpc: [], responseGrpc: [], requestBody: 0, responseBody: 0, requestEnd: '', responseEnd: '', rst: '' };
      views.set(key, v);
    }
    const fromClient = r.srcPort === clientPort.get(r.tcp);
    if (r.type === 1 || r.type === 9) (fromClient ? v.requestFields : v.responseFields).push(...r.headers);
    if (r.type === 0) {
      const payload = r.length - (r.flags & 0x8 ? r.padLength + 1 : 0);
      if (fromClient) v.requestBody += payload;
      else v.responseBody += payload;
      (fromClient ? v.requestGrpc : v.responseGrpc).push(...r.grpcLengths);
    }
    if ((r.type === 0 || r.type === 1) && r.flags & 0x1) {
      if (fromClient) v.requestEnd = r.time;
      else v.responseEnd = r.time;
    }
    if (r.type === 3) v.rst = r.rstError;
  }
  for (const v of views.values()) {
    v.method = field(v.requestFields, ':method');
    v.path = field(v.requestFields, ':path');
    v.authority = field(v.requestFields, ':authority');
    v.status = Number(field(v.responseFields, ':status') || 0);
    v.grpcStatus = lastField(v.responseFields, 'grpc-status');
  }
  return [...views.values()].sort((a, b) => a.key.localeCompare(b.key));
}

function ourView(e: Http2Entry, tcpStream: Map<number, number>): StreamView {
  const req = e.request;
  const res = e.response;
  const responseFields = res ? [...res.headers, ...(res.trailers ?? [])] : [];
  return {
    key: `${tcpStream.get(e.stream)}/${e.http2_stream_id}`,
    method: e.method,
    path: e.path,
    authority: req ? field(req.headers, ':authority') : '',
    status: e.status_code,
    requestFields: req ? [...req.headers, ...(req.trailers ?? [])] : [],
    responseFields,
    grpcStatus: lastField(responseFields, 'grpc-status'),
    requestGrpc: e.grpc_request_message_sizes ?? [],
    responseGrpc: e.grpc_response_message_sizes ?? [],
    requestBody: req?.body_size ?? 0,
    responseBody: res?.body_size ?? 0,
    requestEnd: fmt(e.times.request_end),
    responseEnd: fmt(e.times.response_end),
    rst: e.rst_stream === undefined ? '' : String(HTTP2_ERROR_NAMES.indexOf(e.rst_stream)),
  };
}

interface Run {
  entries: Http2Entry[];
  tcpStream: Map<number, number>;
  dissector: Http2Dissector;
}

async function runCapture(capture: string, options: Http2DissectorOptions = {}, wrap?: (d: TcpDissector) => TcpDissector): Promise<Run> {
  const entries: Http2Entry[] = [];
  const dissector = new Http2Dissector((e) => entries.push(e), options);
  const { tcpStream } = await feedCapture(capture, wrap ? wrap(dissector) : dissector);
  return { entries, tcpStream, dissector };
}

const views = (run: Run): StreamView[] => run.entries.map((e) => ourView(e, run.tcpStream)).sort((a, b) => a.key.localeCompare(b.key));

describe.each(GOLDEN)('%s against tshark', (capture) => {
  let run: Run;
  const expected = tsharkStreams(loadFrames(capture));

  beforeAll(async () => {
    run = await runCapture(capture);
  });

  test('one entry per HTTP/2 stream, with the same fields, messages, sizes and END_STREAM times', () => {
    expect(expected.length).toBeGreaterThan(0);
    expect(views(run)).toEqual(expected);
  });

  test('entry invariants: complete, url = authority + path, gRPC fields for gRPC, failures as worded', () => {
    for (const e of run.entries) {
      expect(e.error).toBeUndefined();
      expect(e.version).toBe('HTTP/2');
      expect(e.url).toBe(field(e.request!.headers, ':authority') + e.path);
      const grpc = (field(e.request!.headers, 'content-type') || field(e.response?.headers ?? [], 'content-type')).startsWith('application/grpc');
      expect(e.protocol).toBe(grpc ? 'grpc' : 'http');
      if (grpc) {
        expect(e.grpc_status).toBe(0);
        expect(`/${e.grpc_service}/${e.grpc_method}`).toBe(e.path);
        expect(e.grpc_request_messages).toBe(e.grpc_request_message_sizes!.length);
      } else expect(e.grpc_status).toBeUndefined();
      if (e.status_code >= 400) expect(e.failure).toBe(`HTTP ${e.status_code}`);
      else if (e.rst_stream !== undefined && e.rst_stream !== 'NO_ERROR') expect(e.failure).toBe(`RST_STREAM ${e.rst_stream}`);
      else expect(e.failure).toBeUndefined();
      expect(e.timestamp).toBe(e.times.request_start!.sec * 1e6 + Math.floor(e.times.request_start!.nsec / 1000));
      if (e.times.response_start) expect(e.elapsed_time).toBe(Math.round(((e.times.response_start.sec - e.times.request_start!.sec) * 1e9 + e.times.response_start.nsec - e.times.request_start!.nsec) / 1000));
    }
    // index is the order of stream creation in the connection: stream ids ascend with it.
    const byConn = new Map<number, Http2Entry[]>();
    for (const e of run.entries) byConn.set(e.stream, [...(byConn.get(e.stream) ?? []), e]);
    for (const es of byConn.values()) {
      const sorted = [...es].sort((a, b) => a.index - b.index);
      expect(sorted.map((e) => e.index)).toEqual(sorted.map((_, i) => i));
      expect(sorted.map((e) => e.http2_stream_id)).toEqual([...sorted.map((e) => e.http2_stream_id)].sort((a, b) => a - b));
    }
  });
});

describe('what the golden captures exercise', () => {
  test('gRPC streaming: many messages per side, bodies concatenated across DATA frames', async () => {
    const bidi = (await runCapture('grpc-go-book/grpc_Bidi_Streaming.pcapng')).entries;
    expect(bidi).toHaveLength(1);
    expect(bidi[0]).toMatchObject({ protocol: 'grpc', grpc_service: 'greet.GreetService', grpc_method: 'GreetEveryone', grpc_status: 0 });
    expect(bidi[0]!.grpc_request_messages).toBeGreaterThan(1);
    expect(bidi[0]!.grpc_response_messages).toBe(bidi[0]!.grpc_request_messages);
    const body = bidi[0]!.request!.body!;
    expect(body.length).toBe(bidi[0]!.request!.body_size);
    // The body is the messages with their 5-byte prefixes, back to back.
    let pos = 0;
    for (const size of bidi[0]!.grpc_request_message_sizes!) pos += 5 + size;
    expect(pos).toBe(body.length);
  });

  test('http2-keywords: six concurrent streams, large bodies bounded by maxBodySize', async () => {
    const { entries } = await runCapture('suricata-verify/http2-keywords.pcap', { maxBodySize: 1000 });
    expect(entries).toHaveLength(6);
    const big = entries.find((e) => e.response!.body_size === 85592)!;
    expect(big.response!.body!.length).toBe(1000);
    expect(big.response!.truncated).toBe(true);
  });

  test('dns_over_https: a cancelled request is a RST_STREAM CANCEL failure, not an error', async () => {
    const { entries } = await runCapture('suricata-verify/dns_over_https.pcap');
    const cancelled = entries.filter((e) => e.rst_stream === 'CANCEL');
    expect(cancelled.map((e) => [e.http2_stream_id, e.failure, e.error])).toEqual([[7, 'RST_STREAM CANCEL', undefined]]);
  });

  test('a TCP stream that is not HTTP/2 yields nothing (grpc_Unary has one)', async () => {
    const run = await runCapture('grpc-go-book/grpc_Unary.pcapng');
    expect(new Set(run.entries.map((e) => run.tcpStream.get(e.stream)))).toEqual(new Set([1]));
    expect(run.dissector.stats().connections).toBe(1);
  });
});

// ---------------------------------------------------------------------------------------------
// Hand-made frames. The encoder below is independent of the decoder: plain literals, indexed
// fields and size updates written byte by byte from RFC 7541 §5-6.

function hpackInt(value: number, prefixBits: number, first: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [first | value];
  const out = [first | max];
  value -= max;
  while (value >= 128) {
    out.push((value % 128) + 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}
const str = (s: string): number[] => {
  const b = [...Buffer.from(s, 'utf8')];
  return [...hpackInt(b.length, 7, 0), ...b];
};
/** Literal without indexing, new name. */
const lit = (name: string, value: string): number[] => [0x00, ...str(name), ...str(value)];
/** Literal with incremental indexing, new name. */
const litIdx = (name: string, value: string): number[] => [0x40, ...str(name), ...str(value)];
const indexed = (i: number): number[] => hpackInt(i, 7, 0x80);
const sizeUpdate = (n: number): number[] => hpackInt(n, 5, 0x20);
const block = (fields: [string, string][]): number[] => fields.flatMap(([n, v]) => lit(n, v));

function frame(type: number, flags: number, sid: number, payload: number[] | Uint8Array): Buffer {
  const p = Buffer.from(payload);
  const h = Buffer.alloc(9);
  h.writeUIntBE(p.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(sid, 5);
  return Buffer.concat([h, p]);
}
const SETTINGS = (pairs: [number, number][] = []): Buffer =>
  frame(
    4,
    0,
    0,
    pairs.flatMap(([id, v]) => [id >> 8, id & 0xff, (v >>> 24) & 0xff, (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff]),
  );
const SETTINGS_ACK = frame(4, 1, 0, []);
const HEADERS = (sid: number, fields: number[], endStream = false): Buffer => frame(1, 0x4 | (endStream ? 1 : 0), sid, fields);
const DATA = (sid: number, bytes: string | number[], endStream = false): Buffer => frame(0, endStream ? 1 : 0, sid, typeof bytes === 'string' ? Buffer.from(bytes) : bytes);
const RST = (sid: number, code: number): Buffer => frame(3, 0, sid, [0, 0, 0, code]);
const grpcMsg = (payload: string, compressed = false): number[] => {
  const b = [...Buffer.from(payload)];
  return [compressed ? 1 : 0, (b.length >>> 24) & 0xff, (b.length >> 16) & 0xff, (b.length >> 8) & 0xff, b.length & 0xff, ...b];
};
const REQ = (p: string, extra: [string, string][] = []): number[] =>
  block([
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', p],
    [':authority', 'example.com'],
    ...extra,
  ]);
const RES = (status: number, extra: [string, string][] = []): number[] => block([[':status', String(status)], ...extra]);
const GRPC_REQ = (p: string): number[] =>
  block([
    [':method', 'POST'],
    [':scheme', 'http'],
    [':path', p],
    [':authority', 'svc:50051'],
    ['content-type', 'application/grpc'],
    ['te', 'trailers'],
  ]);

/** Feeds hand-made bytes as the reassembler would; each `data` call is one packet at time `t` (ms). */
class Feed {
  readonly entries: Http2Entry[] = [];
  readonly d: Http2Dissector;
  private readonly offsets: [number, number] = [0, 0];
  private ended = 0;

  constructor(
    options: Http2DissectorOptions = {},
    open: StreamOpen | null = { clientDir: 0 },
    readonly stream = 3,
  ) {
    this.d = new Http2Dissector((e) => this.entries.push(e), options);
    if (open) this.d.open(stream, open);
  }

  data(dir: TcpDirection, bytes: Uint8Array, t: number, midStream = false): this {
    const sec = Math.floor(t / 1000);
    const nsec = (t % 1000) * 1e6;
    // Surround the bytes with junk: the dissector must honour start/length.
    const wrapped = Buffer.concat([Buffer.from('xx'), bytes, Buffer.from('yy')]);
    const chunk: TcpChunk = { stream: this.stream, dir, offset: this.offsets[dir], buf: wrapped, start: 2, length: bytes.length, firstSec: sec, firstNsec: nsec, lastSec: sec, lastNsec: nsec, midStream };
    this.d.onData(chunk);
    wrapped.fill(0); // the view is only valid during the call
    this.offsets[dir] += bytes.length;
    return this;
  }

  /** Skips `length` bytes of a direction as never captured (a mid-stream join starts later). */
  advance(dir: TcpDirection, length: number): this {
    this.offsets[dir] += length;
    return this;
  }

  gap(dir: TcpDirection, length: number, t: number): this {
    this.d.onGap({ stream: this.stream, dir, offset: this.offsets[dir], length, reason: 'acked', sec: Math.floor(t / 1000), nsec: 0 });
    this.offsets[dir] += length;
    return this;
  }

  end(reason: TcpEndReason = 'fin'): Http2Entry[] {
    for (const dir of [0, 1] as const) {
      this.d.onEnd({ stream: this.stream, dir, offset: this.offsets[dir], reason, sec: 0, nsec: 0, closed: ++this.ended === 2 });
    }
    return this.entries;
  }
}

const PREFACE_AND_SETTINGS = Buffer.concat([HTTP2_PREFACE, SETTINGS([[3, 100]])]);
const text = (b: Uint8Array | null): string => (b ? Buffer.from(b).toString('latin1') : '');

describe('HTTP/2 by hand', () => {
  test.each([
    ['gzip', zlib.gzipSync],
    ['deflate', zlib.deflateSync],
    ['br', zlib.brotliCompressSync],
  ] as const)('a %s Content-Encoding body is decoded, bounded by maxBodySize; body_size stays the bytes on the wire', (coding, compress) => {
    const plain = 'hello '.repeat(200);
    const wire = compress(Buffer.from(plain));
    const run = (maxBodySize: number) => {
      const f = new Feed({ maxBodySize });
      f.data(0, Buffer.concat([PREFACE_AND_SETTINGS, HEADERS(1, block([[':method', 'GET'], [':scheme', 'http'], [':path', '/z'], [':authority', 'h']]), true)]), 1000);
      f.data(1, Buffer.concat([SETTINGS(), HEADERS(1, RES(200, [['content-encoding', coding]])), DATA(1, [...wire], true)]), 1010);
      expect(f.entries).toHaveLength(1);
      return f.entries[0]!.response!;
    };
    const whole = run(10_000);
    expect(text(whole.body)).toBe(plain);
    expect(whole.truncated).toBe(false);
    expect(whole.body_size).toBe(wire.length);
    // Cut at 600 decoded bytes: a non-empty prefix of the text, never more than the bound.
    const cut = run(600);
    const got = text(cut.body);
    expect(got.length).toBeGreaterThan(0);
    expect(got.length).toBeLessThanOrEqual(600);
    expect(plain.startsWith(got)).toBe(true);
    expect(cut.truncated).toBe(true);
    expect(cut.body_size).toBe(wire.length);
  });

  test('a request and response: CONTINUATION, padding and priority, trailers, times', () => {
    const req = REQ('/a', [['x-long', 'v'.repeat(300)]]);
    // HEADERS with PADDED and PRIORITY, then two CONTINUATIONs.
    const headers = frame(1, 0x08 | 0x20 | 0x1, 1, [3, 0, 0, 0, 0, 16, ...req.slice(0, 10), 0, 0, 0]);
    const cont1 = frame(9, 0, 1, req.slice(10, 200));
    const cont2 = frame(9, 0x4, 1, req.slice(200));
    const f = new Feed();
    f.data(0, Buffer.concat([PREFACE_AND_SETTINGS, headers, cont1]), 1000).data(0, cont2, 1001);
    f.data(1, Buffer.concat([SETTINGS(), SETTINGS_ACK, HEADERS(1, RES(200, [['content-type', 'text/plain']]))]), 1010);
    // DATA with 4 bytes of padding, then trailers ending the stream.
    f.data(1, frame(0, 0x8, 1, [4, ...Buffer.from('hello'), 0, 0, 0, 0]), 1011).data(1, DATA(1, ' world'), 1012);
    expect(f.entries).toHaveLength(0);
    f.data(1, HEADERS(1, block([['x-trailer', 't']]), true), 1013);
    expect(f.entries).toHaveLength(1);
    const e = f.entries[0]!;
    expect(e).toMatchObject({ protocol: 'http', version: 'HTTP/2', http2_stream_id: 1, index: 0, method: 'GET', path: '/a', url: 'example.com/a', status_code: 200, timestamp: 1_000_000, elapsed_time: 10_000 });
    expect(e.request!.headers.map(([k]) => k)).toEqual([':method', ':scheme', ':path', ':authority', 'x-long']);
    expect(e.request!.headers[4]![1]).toBe('v'.repeat(300));
    expect(text(e.response!.body)).toBe('hello world');
    expect(e.response!.body_size).toBe(11);
    expect(e.response!.trailers).toEqual([['x-trailer', 't']]);
    expect(e.times).toEqual({ request_start: { sec: 1, nsec: 0 }, request_end: { sec: 1, nsec: 1e6 }, response_start: { sec: 1, nsec: 10e6 }, response_end: { sec: 1, nsec: 13e6 } });
    expect(e.error).toBeUndefined();
    expect(e.failure).toBeUndefined();
  });

  test('byte-at-a-time delivery parses the same as whole packets', () => {
    const client = Buffer.concat([PREFACE_AND_SETTINGS, HEADERS(1, REQ('/x')), DATA(1, 'body', true)]);
    const server = Buffer.concat([SETTINGS(), HEADERS(1, RES(404)), frame(0, 0x9, 1, [2, 0x41, 0, 0])]);
    const whole = new Feed().data(0, client, 1).data(1, server, 2).end();
    const f = new Feed();
    for (const b of client) f.data(0, Buffer.from([b]), 1);
    for (const b of server) f.data(1, Buffer.from([b]), 2);
    expect(f.end()).toEqual(whole);
    expect(whole.map((e) => [e.status_code, e.failure, text(e.request!.body), text(e.response!.body), e.error])).toEqual([[404, 'HTTP 404', 'body', 'A', undefined]]);
  });

  test('concurrent interleaved streams: one entry each, index in creation order, emitted as they complete', () => {
    const f = new Feed();
    f.data(0, Buffer.concat([PREFACE_AND_SETTINGS, HEADERS(1, REQ('/1'), true), HEADERS(3, REQ('/3'), true), HEADERS(5, REQ('/5'), true)]), 1);
    f.data(1, Buffer.concat([HEADERS(5, RES(200)), HEADERS(1, RES(200)), DATA(5, 'five-'), DATA(1, 'one', true), DATA(5, 'five', true), HEADERS(3, RES(503), true)]), 2);
    expect(f.entries.map((e) => [e.http2_stream_id, e.index, e.path, text(e.response!.body), e.failure])).toEqual([
      [1, 0, '/1', 'one', undefined],
      [5, 2, '/5', 'five-five', undefined],
      [3, 1, '/3', '', 'HTTP 503'],
    ]);
  });

  test('gRPC: messages split across DATA frames and several in one frame, trailers with status', () => {
    const f = new Feed();
    const m1 = grpcMsg('first message');
    const m2 = grpcMsg('2nd', true);
    const m3 = grpcMsg('');
    const reqBody = [...m1, ...m2, ...m3];
    f.data(0, Buffer.concat([PREFACE_AND_SETTINGS, HEADERS(1, GRPC_REQ('/pkg.Greeter/SayHello')), DATA(1, reqBody.slice(0, 3)), DATA(1, reqBody.slice(3, 20)), DATA(1, reqBody.slice(20), true)]), 1);
    f.data(1, Buffer.concat([HEADERS(1, RES(200, [['content-type', 'application/grpc+proto']])), DATA(1, grpcMsg('reply')), HEADERS(1, block([['grpc-status', '0'], ['grpc-message', '']]), true)]), 2);
    expect(f.entries).toHaveLength(1);
    expect(f.entries[0]).toMatchObject({
      protocol: 'grpc',
      grpc_service: 'pkg.Greeter',
      grpc_method: 'SayHello',
      grpc_status: 0,
      grpc_message: '',
      grpc_request_messages: 3,
      grpc_request_message_sizes: [13, 3, 0],
      grpc_response_messages: 1,
      grpc_response_message_sizes: [5],
      grpc_compressed_messages: 1,
      request: { body_size: reqBody.length },
    });
    expect(f.entries[0]!.failure).toBeUndefined();
  });

  test('gRPC trailers-only error response: status and percent-decoded message, failure worded', () => {
    const f = new Feed();
    f.data(0, Buffer.concat([PREFACE_AND_SETTINGS, HEADERS(1, GRPC_REQ('/pkg.Store/Get')), DATA(1, grpcMsg('k'), true)]), 1);
    f.data(1, HEADERS(1, RES(200, [['content-type', 'application/grpc'], ['grpc-status', '5'], ['grpc-message', 'key%20not%20found']]), true), 2);
    const e = f.entries[0]!;
    expect([e.grpc_status, e.grpc_message, e.failure, e.response!.trailers, e.error]).toEqual([5, 'key not found', 'grpc-status 5 NOT_FOUND: key not found', null, undefined]);
  });

  test('gRPC without any status (stream reset): grpc_status -1', () => {
    const f = new Feed();
    f.data(0, Buffer.concat([PREFACE_AND_SETTINGS, HEADERS(1, GRPC_REQ('/pkg.S/M'))]), 1).data(1, HEADERS(1, RES(200, [['content-type', 'application/grpc']])), 2);
    f.data(0, RST(1, 8), 3);
    expect(f.entries.map((e) => [e.grpc_status, e.failure, e.rst_stream, e.error])).toEqual([[-1, 'RST_STREAM CANCEL', 'CANCEL', undefined]]);
  });

  test('RST_STREAM: an error code is a failure; NO_ERROR after a complete response is not', () => {
    const f = new Feed();
    f.data(0, Buffer.concat([PREFACE_AND_SETTINGS, HEADERS(1, REQ('/slow'), true), HEADERS(3, REQ('/upload'))]), 1);
    f.data(1, RST(1, 7), 2); // REFUSED_STREAM, no response
    f.data(1, Buffer.concat([HEADERS(3, RES(200), true), RST(3, 0)]), 3);
    expect(f.entries.map((e) => [e.path, e.status_code, e.failure, e.error, e.response === null])).toEqual([
      ['/slow', 0, 'RST_STREAM REFUSED_STREAM', undefined, true],
      ['/upload', 200, undefined, undefined, false],
    ]);
  });

  test('streams still open when the connection ends: pair-not-found without a response, dissection when unfinished', () => {
    const f = new Feed();
    f.data(0, Buffer.concat([PREFACE_AND_SETTINGS, HEADERS(1, REQ('/never'), true), HEADERS(3, REQ('/half'), true)]), 1);
    f.data(1, Buffer.concat([HEADERS(3, RES(200)), DATA(3, 'partial')]), 2);
    expect(f.end().map((e) => [e.path, e.error, e.response === null])).toEqual([
      ['/never', 'pair-not-found', true],
      ['/half', 'dissection', false],
    ]);
    expect(f.d.state()).toEqual({ connections: 0, openStreams: 0, bufferedBytes: 0 });
  });

  test('SETTINGS_HEADER_TABLE_SIZE: a size update within the announced limit decodes, one above it is flagged', () => {
    const run = (update: number): Http2Entry[] => {
      const f = new Feed();
      // The client announces a 100-octet table for what it receives; the server acknowledges.
      f.data(0, Buffer.concat([HTTP2_PREFACE, SETTINGS([[1, 100]]), HEADERS(1, REQ('/t'), true)]), 1);
      f.data(1, Buffer.concat([SETTINGS(), SETTINGS_ACK, HEADERS(1, [...sizeUpdate(update), ...indexed(8), ...litIdx('x-a', 'one')], true)]), 2);
      f.data(0, Buffer.concat([SETTINGS_ACK, HEADERS(3, REQ('/u'), true)]), 3);
      // References the entry just inserted (index 62), if the table kept it.
      f.data(1, HEADERS(3, [...indexed(8), ...indexed(62)], true), 4);
      return f.end();
    };
    expect(run(100).map((e) => [e.status_code, e.response!.headers, e.error])).toEqual([
      [200, [[':status', '200'], ['x-a', 'one']], undefined],
      [200, [[':status', '200'], ['x-a', 'one']], undefined],
    ]);
    // 4096 > 100: the first block does not decode; the table is forgotten, so index 62 cannot be trusted either.
    expect(run(4096).map((e) => [e.http2_stream_id, e.response!.headers, e.error])).toEqual([
      [1, [], 'dissection'],
      [3, [], 'dissection'],
    ]);
    // A 0-octet table keeps nothing: the reference to 62 is an error.
    expect(run(0).map((e) => e.error)).toEqual([undefined, 'dissection']);
  });

  test('h2c upgrade: stream 1 is the upgraded request; the client still sends the preface, the server starts with SETTINGS', () => {
    const f = new Feed({}, {
      clientDir: 0,
      upgrade: {
        path: '/up?q=1',
        host: 'h2c.example',
        requestHeaders: [
          ['Host', 'h2c.example'],
          ['Connection', 'Upgrade, HTTP2-Settings'],
          ['Upgrade', 'h2c'],
          ['HTTP2-Settings', 'AAMAAABkAAQAAP__'],
          ['Accept', '*/*'],
        ],
        responseHeaders: [
          ['Connection', 'Upgrade'],
          ['Upgrade', 'h2c'],
        ],
        firstIndex: 4,
      },
    });
    // The upgrade bytes were HTTP/1.1: the HTTP/2 bytes start at a later offset of each direction.
    f.advance(0, 120).advance(1, 70);
    f.data(1, Buffer.concat([SETTINGS([[3, 100]]), HEADERS(1, RES(200, [['content-type', 'text/html']]))]), 5);
    f.data(0, Buffer.concat([HTTP2_PREFACE, SETTINGS(), SETTINGS_ACK, HEADERS(3, REQ('/next'), true)]), 6);
    f.data(1, Buffer.concat([SETTINGS_ACK, DATA(1, '<html>', true), HEADERS(3, RES(204), true)]), 7);
    const es = f.end();
    expect(es.map((e) => [e.http2_stream_id, e.index, e.method, e.path, e.url, e.status_code, text(e.response!.body), e.error])).toEqual([
      [1, 4, 'GET', '/up?q=1', 'h2c.example/up?q=1', 200, '<html>', undefined],
      [3, 5, 'GET', '/next', 'example.com/next', 204, '', undefined],
    ]);
    expect(es[0]!.request!.headers).toEqual([
      [':method', 'GET'],
      [':path', '/up?q=1'],
      [':authority', 'h2c.example'],
      ['accept', '*/*'],
    ]);
  });

  test('mid-stream join: frames found from a boundary; blocks needing the unseen HPACK table are flagged, others decode', () => {
    const f = new Feed({}, { clientDir: undefined });
    // The client direction is joined in the middle of a DATA frame of an earlier stream.
    const client = Buffer.concat([DATA(7, 'x'.repeat(40)).subarray(20), HEADERS(9, REQ('/literal'), true), HEADERS(11, [...indexed(2), ...indexed(70)], true)]);
    f.advance(0, 5000).advance(1, 9000);
    f.data(0, client, 1, true);
    f.data(1, Buffer.concat([DATA(7, 'tail', true), HEADERS(9, RES(200), true), HEADERS(11, RES(200), true)]), 2, true);
    const es = f.end();
    expect(es.map((e) => [e.http2_stream_id, e.path, e.status_code, e.error])).toEqual([
      [9, '/literal', 200, undefined],
      [11, '', 200, 'dissection'],
    ]);
    expect(f.d.stats().skippedBytes).toBe(9 + 40 - 20); // the rest of the DATA frame the capture joined in
  });

  test('a gap inside a DATA payload keeps the frame sync: that entry is flagged, the next one is intact', () => {
    const f = new Feed();
    f.data(0, Buffer.concat([PREFACE_AND_SETTINGS, HEADERS(1, REQ('/a'), true), HEADERS(3, REQ('/b'), true)]), 1);
    const big = DATA(1, 'y'.repeat(100), true);
    f.data(1, Buffer.concat([HEADERS(1, RES(200)), big.subarray(0, 30)]), 2).gap(1, 50, 3).data(1, big.subarray(80), 4);
    f.data(1, Buffer.concat([HEADERS(3, RES(200)), DATA(3, 'ok', true)]), 5);
    expect(f.entries.map((e) => [e.path, e.error, e.response!.body_size, e.response!.truncated])).toEqual([
      ['/a', 'dissection', 100, true],
      ['/b', undefined, 2, false],
    ]);
  });

  test('a gap across frames: streams open in that direction are flagged, parsing resyncs at the next frame boundary', () => {
    const f = new Feed();
    f.data(0, Buffer.concat([PREFACE_AND_SETTINGS, HEADERS(1, REQ('/a'), true), HEADERS(3, REQ('/b'), true)]), 1);
    f.data(1, HEADERS(1, RES(200)), 2).gap(1, 30, 3);
    f.data(0, HEADERS(5, REQ('/c'), true), 4);
    // Resumes mid-frame: 7 junk bytes, then whole frames. The lost bytes may have held frames
    // of streams 1 and 3 (even a first HEADERS of 3, which would make 201 its trailers).
    f.data(1, Buffer.concat([Buffer.from('jjjjjjj'), HEADERS(3, RES(201)), DATA(3, 'b', true), DATA(1, 'a', true), HEADERS(5, RES(202), true)]), 5);
    expect(f.end().map((e) => [e.path, e.status_code, e.error])).toEqual([
      ['/b', 201, 'dissection'],
      ['/a', 200, 'dissection'],
      ['/c', 202, undefined],
    ]);
    expect(f.d.stats()).toMatchObject({ resyncs: 1, skippedBytes: 7 });
  });

  test('PUSH_PROMISE and pushed streams are decoded for HPACK and skipped', () => {
    const f = new Feed();
    f.data(0, Buffer.concat([PREFACE_AND_SETTINGS, HEADERS(1, REQ('/page'), true)]), 1);
    const promise = frame(5, 0x4, 1, [0, 0, 0, 2, ...litIdx(':path', '/style.css')]);
    f.data(1, Buffer.concat([promise, HEADERS(1, [...indexed(8), ...indexed(62)]), HEADERS(2, RES(200)), DATA(2, 'css', true), DATA(1, 'html', true)]), 2);
    expect(f.entries.map((e) => [e.http2_stream_id, e.response!.headers, text(e.response!.body)])).toEqual([
      [
        1,
        [
          [':status', '200'],
          [':path', '/style.css'],
        ],
        'html',
      ],
    ]);
    expect(f.d.stats().pushedStreams).toBe(1);
  });

  test('an interim 1xx response is skipped; bodies are bounded by maxBodySize, body_size is not', () => {
    const f = new Feed({ maxBodySize: 4 });
    f.data(0, Buffer.concat([PREFACE_AND_SETTINGS, HEADERS(1, REQ('/up', [['expect', '100-continue']])), DATA(1, 'abcdefgh', true)]), 1);
    f.data(1, Buffer.concat([HEADERS(1, RES(100)), HEADERS(1, RES(201)), DATA(1, 'done', true)]), 2);
    expect(f.entries.map((e) => [e.status_code, text(e.request!.body), e.request!.body_size, e.request!.truncated, e.response!.truncated])).toEqual([[201, 'abcd', 8, true, false]]);
  });

  test('maxStreams and maxHeaderListSize bound what a connection keeps', () => {
    const f = new Feed({ maxStreams: 2, maxHeaderListSize: 200 });
    f.data(0, Buffer.concat([PREFACE_AND_SETTINGS, HEADERS(1, REQ('/1'), true), HEADERS(3, REQ('/3'), true), HEADERS(5, REQ('/5', [['big', 'z'.repeat(300)]]), true)]), 1);
    f.data(1, Buffer.concat([HEADERS(5, RES(200), true), HEADERS(1, RES(200), true), HEADERS(3, RES(200, [['big', 'z'.repeat(300)]]), true)]), 2);
    expect(f.entries.map((e) => [e.path, e.response!.headers.length])).toEqual([
      ['/1', 1],
      ['/3', 1],
    ]);
    // Both blocks with the big field are cut, including the request of the dropped stream 5
    // (decoded anyway, to keep the HPACK table in step).
    expect(f.d.stats()).toMatchObject({ droppedStreams: 1, headerListsTruncated: 2 });
  });

  test('malformed frames and HPACK garbage never throw; they are counted and flagged', () => {
    const f = new Feed();
    f.data(0, Buffer.concat([PREFACE_AND_SETTINGS, HEADERS(1, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f], true), frame(9, 4, 9, [1, 2, 3]), frame(0, 0x8, 3, [200, 1])]), 1);
    f.data(0, Buffer.concat([HEADERS(5, REQ('/ok'), true)]), 2);
    f.data(1, Buffer.concat([HEADERS(1, RES(200), true), HEADERS(5, RES(200), true)]), 3);
    // Stream 1's block does not decode; the table is forgotten, but stream 5's block uses
    // literals only and decodes. The stray CONTINUATION and the over-padded DATA are counted.
    expect(f.end().map((e) => [e.http2_stream_id, e.request!.headers.length, e.error])).toEqual([
      [1, 0, 'dissection'],
      [5, 4, undefined],
    ]);
    expect(f.d.stats()).toMatchObject({ headerErrors: 1, protocolErrors: 2 });
  });
});

describe('detection', () => {
  const verdict = (s: string | Buffer, fromClient: boolean | undefined): string => HTTP2_PROTOCOL.detect(typeof s === 'string' ? Buffer.from(s, 'latin1') : s, fromClient);

  test('the client preface: more while a prefix, yes when whole, no otherwise', () => {
    expect(verdict('PRI * HT', true)).toBe('more');
    expect(verdict(HTTP2_PREFACE, true)).toBe('yes');
    expect(verdict(Buffer.concat([HTTP2_PREFACE, SETTINGS()]), undefined)).toBe('yes');
    expect(verdict('PRI * HTTP/1.1\r\n', true)).toBe('no');
    expect(verdict('GET / HTTP/1.1\r\n', true)).toBe('no');
  });

  test('a server direction: a strict SETTINGS frame at offset 0, only when known to be the server', () => {
    const s = SETTINGS([
      [3, 100],
      [4, 65535],
      [5, 16384],
    ]);
    expect(verdict(s, false)).toBe('yes');
    expect(verdict(s.subarray(0, 5), false)).toBe('more');
    expect(verdict(s.subarray(0, 12), false)).toBe('more');
    expect(verdict(s, true)).toBe('no');
    expect(verdict(s, undefined)).toBe('no'); // a SETTINGS frame alone is not enough when the roles are unknown
    expect(verdict(SETTINGS([[5, 10]]), false)).toBe('no'); // MAX_FRAME_SIZE below 16384
    expect(verdict(SETTINGS_ACK, false)).toBe('no');
    expect(verdict(HEADERS(1, RES(200)), false)).toBe('no');
    expect(verdict('HTTP/1.1 200 OK\r\n', false)).toBe('no');
    expect(HTTP2_PROTOCOL.ports).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Robustness: the golden captures damaged on the way to the dissector.


type Damage = 'truncate' | 'flip' | 'drop';

/** Passes the reassembler's events on, damaged: cut off after a point, bytes flipped, or chunks turned into gaps. */
class Damaging implements TcpDissector {
  maxBuffered = 0;
  private readonly cutAt: number;
  private seen = 0;

  constructor(
    private readonly inner: Http2Dissector,
    private readonly kind: Damage,
    private readonly random: () => number,
    totalChunks: number,
  ) {
    this.cutAt = Math.floor(random() * totalChunks);
  }

  open(stream: number, info: StreamOpen): void {
    this.inner.open(stream, info);
  }

  onData(c: TcpChunk): void {
    const n = this.seen++;
    if (this.kind === 'truncate' && n >= this.cutAt) return;
    if (this.kind === 'drop' && this.random() < 0.1) {
      const g: TcpGap = { stream: c.stream, dir: c.dir, offset: c.offset, length: c.length, reason: 'acked', sec: c.firstSec, nsec: c.firstNsec };
      this.inner.onGap(g);
    } else if (this.kind === 'flip') {
      const copy = Buffer.from(c.buf.subarray(c.start, c.start + c.length));
      for (let i = 0; i < copy.length; i++) if (this.random() < 0.01) copy[i] = Math.floor(this.random() * 256);
      this.inner.onData({ ...c, buf: copy, start: 0 });
    } else this.inner.onData(c);
    this.maxBuffered = Math.max(this.maxBuffered, this.inner.state().bufferedBytes);
  }

  onGap(g: TcpGap): void {
    this.inner.onGap(g);
  }

  onEnd(e: TcpEnd): void {
    this.inner.onEnd(e);
  }

  flush(): void {
    this.inner.flush();
  }
}

/** Entries left unflagged by damaged runs, compared with the golden: the checks above are not vacuous. */
const intactCompared: Record<Damage, number> = { truncate: 0, flip: 0, drop: 0 };
/** Entries flagged in damaged runs. */
const flagged: Record<Damage, number> = { truncate: 0, flip: 0, drop: 0 };

describe.each(GOLDEN)('%s damaged', (capture) => {
  const expected = new Map(tsharkStreams(loadFrames(capture)).map((v) => [v.key, v]));
  let chunks = 0;

  beforeAll(async () => {
    let n = 0;
    await runCapture(capture, {}, (d) => ({
      open: (s, i) => d.open(s, i),
      onData: (c) => {
        n++;
        d.onData(c);
      },
      onGap: (g) => d.onGap(g),
      onEnd: (e) => d.onEnd(e),
      flush: () => d.flush(),
    }));
    chunks = n;
  });

  test.each(['truncate', 'flip', 'drop'] as const)('%s: nothing throws, state stays bounded and is freed, intact entries equal the golden', async (kind) => {
    for (let seed = 1; seed <= 12; seed++) {
      let damaging: Damaging | undefined;
      const run = await runCapture(capture, { maxBodySize: 4096 }, (d) => (damaging = new Damaging(d as Http2Dissector, kind, prng(seed * 7919 + kind.length), chunks)));
      expect(damaging!.maxBuffered).toBeLessThan(256 * 1024);
      expect(run.dissector.state()).toEqual({ connections: 0, openStreams: 0, bufferedBytes: 0 });
      flagged[kind] += run.entries.filter((e) => e.error !== undefined).length;
      if (kind === 'flip') continue; // flipped payload bytes are undetectable: only the absence of failures is checked
      for (const e of run.entries) {
        if (e.error !== undefined) continue;
        const v = ourView(e, run.tcpStream);
        expect(v).toEqual(expected.get(v.key));
        intactCompared[kind]++;
      }
    }
  });
});

describe('damage coverage', () => {
  test('damaged runs left entries intact (compared above) and flagged others', () => {
    expect(intactCompared.truncate).toBeGreaterThan(20);
    expect(intactCompared.drop).toBeGreaterThan(20);
    expect(flagged.truncate).toBeGreaterThan(20);
    expect(flagged.drop).toBeGreaterThan(20);
    expect(flagged.flip).toBeGreaterThan(20);
  });
});

// ---------------------------------------------------------------------------------------------
// Through the stream router, as the worker runs it: HTTP/1.x and HTTP/2 registered together.

function routed(upgradeTo: Http2Dissector, http: HttpEntry[], clientDirs: Map<number, TcpDirection | undefined>): StreamRouter {
  const router: StreamRouter = new StreamRouter({
    protocols: [
      { protocol: HTTP_PROTOCOL, dissector: new HttpDissector((e) => http.push(e), { onUpgrade: (u) => router.upgrade(u) }) },
      { protocol: HTTP2_PROTOCOL, dissector: upgradeTo },
    ],
    upgrades: { h2c: upgradeTo },
    facts: (stream) => ({ clientDir: clientDirs.get(stream), ports: [0, 0] }),
  });
  return router;
}

describe('through the stream router', () => {
  test.each(GOLDEN)('%s: HTTP/2 detected by content, the same entries as fed directly, nothing for HTTP/1', async (capture) => {
    const direct = await runCapture(capture);
    const entries: Http2Entry[] = [];
    const http: HttpEntry[] = [];
    const clientDirs = new Map<number, TcpDirection | undefined>();
    const router = routed(new Http2Dissector((e) => entries.push(e)), http, clientDirs);
    await feedCapture(capture, {
      open: (stream, info) => clientDirs.set(stream, info.clientDir),
      onData: (c) => router.onData(c),
      onGap: (g) => router.onGap(g),
      onEnd: (e) => router.onEnd(e),
      flush: () => {},
    });
    expect(entries).toEqual(direct.entries);
    expect(http).toEqual([]);
    expect(router.stats().claimed).toMatchObject({ http2: new Set(direct.entries.map((e) => e.stream)).size });
  });

  test('h2c: the 101 exchange is an HTTP/1.1 entry, then stream 1 answers the upgraded request, next index on', () => {
    const entries: Http2Entry[] = [];
    const http: HttpEntry[] = [];
    const clientDirs = new Map<number, TcpDirection | undefined>([[9, 0]]);
    const router = routed(new Http2Dissector((e) => entries.push(e)), http, clientDirs);
    const offsets = [0, 0];
    const send = (dir: TcpDirection, bytes: Uint8Array, t: number): void => {
      router.onData({ stream: 9, dir, offset: offsets[dir]!, buf: bytes, start: 0, length: bytes.length, firstSec: t, firstNsec: 0, lastSec: t, lastNsec: 0, midStream: false });
      offsets[dir]! += bytes.length;
    };
    send(0, Buffer.from('GET /old HTTP/1.1\r\nHost: h\r\n\r\n'), 1);
    send(1, Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'), 2);
    send(0, Buffer.from('GET /new?x HTTP/1.1\r\nHost: h2.example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAEAAAAA\r\n\r\n'), 3);
    // The 101, the server's SETTINGS and the response on stream 1 in one packet.
    send(1, Buffer.concat([Buffer.from('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n'), SETTINGS(), HEADERS(1, RES(200))]), 4);
    send(0, Buffer.concat([HTTP2_PREFACE, SETTINGS(), SETTINGS_ACK]), 5);
    // HTTP2-Settings announced a 0-octet table: the server's encoder may not insert anything.
    send(1, Buffer.concat([SETTINGS_ACK, DATA(1, 'upgraded', true)]), 6);
    for (const dir of [0, 1] as const) router.onEnd({ stream: 9, dir, offset: offsets[dir]!, reason: 'fin', sec: 7, nsec: 0, closed: dir === 1 });
    expect(http.map((e) => [e.index, e.path, e.status_code])).toEqual([
      [0, '/old', 200],
      [1, '/new?x', 101],
    ]);
    expect(entries.map((e) => [e.index, e.http2_stream_id, e.method, e.url, e.status_code, text(e.response!.body), e.error])).toEqual([[2, 1, 'GET', 'h2.example/new?x', 200, 'upgraded', undefined]]);
  });
});
