import { readFileSync } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import type { TcpChunk, TcpDirection, TcpEnd, TcpGap } from '@kubeshark-mcp/capture';
import { GOLDEN_DIR } from '@kubeshark-mcp/testkit';
import type { HeaderList } from '../src/entry';
import type { StreamOpen, TcpDissector } from '../src/stream';
import { WEBSOCKET_PROTOCOL, WS_OPCODES, WebSocketDissector, type WebSocketDissectorOptions, type WebSocketEntry } from '../src/websocket';
import { feedCapture } from './support/feed';
import { type MongodbEntry } from '../src/mongodb';
import { type MysqlEntry } from '../src/mysql';
import { type StreamRouter } from '../src/router';
import { prng } from './support/damage';
import { routeMysqlMongodbWebSocket } from './support/feed';

/**
 * The WebSocket dissector against tshark's websocket fields for the same capture
 * (fixtures/golden/<capture>/websocket.psv, scripts/golden-websocket.sh), then behaviour on
 * hand-made frames, then robustness.
 *
 * The production hand-off (HTTP dissector -> router -> `open({ upgrade })`) is built elsewhere;
 * here a small test-side splitter finds the end of the upgrade request and of the 101 response,
 * opens the stream with the upgrade facts and forwards the later bytes at their offsets.
 *
 * How we compare: tshark shows one row per frame (FIN, opcode, MASK, payload length, unmasked
 * text). We group its frames into messages per direction (a data frame and its continuations up
 * to FIN; control frames alone) and compare, in order, direction, opcode, mask, payload size,
 * frame count and the unmasked text with our entries. The capture's messages are all single
 * frames; fragmentation, control frames, long lengths and compression are covered by hand.
 * zeek/http_docker-http-upgrade.pcap upgrades to Docker's raw `tcp` stream, not WebSocket: not
 * a WebSocket golden (checked below).
 *
 * Deliberate differences from tshark's per-frame view: one entry per message (fragments joined),
 * and a ping and the pong answering it are one entry (request = ping, response = pong, elapsed =
 * round trip); the capture has neither fragments nor pings, so the comparison is one to one.
 */

const CAPTURE = 'suricata-verify/basic_websockets.pcap';

interface Frame {
  /** Capture time of the frame, µs. */
  timestamp: number;
  server: boolean;
  fin: boolean;
  opcode: number;
  masked: boolean;
  length: number;
  text: string;
  closeCode: string;
  closeReason: string;
}

/** `1699593970.123456000` -> microseconds. */
function epochUs(s: string): number {
  const [i, f = ''] = s.split('.');
  return Number(i) * 1e6 + Number(f.padEnd(9, '0').slice(0, 6));
}

function loadGolden(capture: string): Frame[] {
  const [head, ...lines] = readFileSync(path.join(GOLDEN_DIR, capture, 'websocket.psv'), 'utf8').split('\n');
  const cols = head!.split('|');
  return lines
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const f = l.split('|');
      const at = (n: string): string => f[cols.indexOf(n)] ?? '';
      const len7 = Number(at('websocket.payload_length'));
      return {
        timestamp: epochUs(at('frame.time_epoch')),
        server: at('tcp.srcport') === '80',
        fin: at('websocket.fin') === '1',
        opcode: Number(at('websocket.opcode')),
        masked: at('websocket.mask') === '1',
        length: len7 === 126 ? Number(at('websocket.payload_length_ext_16')) : len7 === 127 ? Number(at('websocket.payload_length_ext_64')) : len7,
        text: at('websocket.payload.text'),
        closeCode: at('websocket.payload.close.status_code'),
        closeReason: at('websocket.payload.close.reason'),
      };
    });
}

interface Message {
  /** Capture time of the message's first frame, µs. */
  timestamp: number;
  direction: 'client' | 'server';
  opcode: string;
  masked: boolean;
  size: number;
  fragments: number;
  text: string;
  closeCode: number;
}

/** tshark's frames as messages: data frames joined up to FIN per direction, control frames alone. */
function tsharkMessages(frames: Frame[]): Message[] {
  const out: Message[] = [];
  const open = new Map<boolean, Message>();
  for (const f of frames) {
    const direction = f.server ? 'server' : 'client';
    if (f.opcode >= 8) {
      out.push({ timestamp: f.timestamp, direction, opcode: WS_OPCODES[f.opcode]!, masked: f.masked, size: f.length, fragments: 1, text: '', closeCode: Number(f.closeCode || 0) });
      continue;
    }
    let m = open.get(f.server);
    if (!m) {
      m = { timestamp: f.timestamp, direction, opcode: WS_OPCODES[f.opcode]!, masked: f.masked, size: 0, fragments: 0, text: '', closeCode: 0 };
      open.set(f.server, m);
    }
    m.size += f.length;
    m.fragments++;
    m.text += f.text;
    if (f.fin) {
      out.push(m);
      open.delete(f.server);
    }
  }
  return out;
}

function ourMessages(entries: WebSocketEntry[]): Message[] {
  return entries.map((e) => {
    const msg = e.ws_direction === 'client' ? e.request : e.response;
    return {
      timestamp: e.timestamp,
      direction: e.ws_direction,
      opcode: e.ws_opcode,
      masked: e.ws_masked,
      size: e.ws_payload_size,
      fragments: e.ws_fragments,
      text: e.ws_opcode === 'text' && msg?.body ? Buffer.from(msg.body).toString('utf8') : '',
      closeCode: e.ws_close_code,
    };
  });
}

/**
 * Test-side hand-off: buffers each direction until its HTTP header block ends, then opens the
 * WebSocket dissector with the upgrade facts and forwards every later byte at its offset.
 */
class UpgradeSplitter implements TcpDissector {
  private readonly streams = new Map<
    number,
    {
      clientDir: TcpDirection | undefined;
      head: [Buffer, Buffer];
      boundary: [number, number];
      request: { path: string; host: string; headers: HeaderList } | null;
      response: HeaderList | null;
      opened: boolean;
      queued: TcpChunk[];
    }
  >();
  /** The Upgrade header of each upgrade exchange seen: [request's, response's]. */
  readonly upgrades: [string, string][] = [];

  constructor(private readonly ws: TcpDissector) {}

  open(stream: number, info: StreamOpen): void {
    this.streams.set(stream, { clientDir: info.clientDir, head: [Buffer.alloc(0), Buffer.alloc(0)], boundary: [-1, -1], request: null, response: null, opened: false, queued: [] });
  }

  flush(): void {
    this.ws.flush();
  }

  onData(c: TcpChunk): void {
    const s = this.streams.get(c.stream);
    if (!s) return;
    const bytes = c.buf.subarray(c.start, c.start + c.length);
    let from = 0;
    if (s.boundary[c.dir] < 0) {
      const head = Buffer.concat([s.head[c.dir], bytes]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        s.head[c.dir] = head;
        return;
      }
      s.boundary[c.dir] = c.offset - s.head[c.dir].length + end + 4;
      from = s.boundary[c.dir] - c.offset;
      const lines = head.toString('latin1', 0, end).split('\r\n');
      const headers: HeaderList = lines.slice(1).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]);
      const start = lines[0]!.split(' ');
      if (start[0]!.startsWith('HTTP/')) {
        // Only a 101 switches protocols; other streams stay with HTTP.
        if (start[1] !== '101') {
          this.streams.delete(c.stream);
          return;
        }
        s.response = headers;
      }
      else s.request = { path: start[1]!, host: headers.find(([k]) => k.toLowerCase() === 'host')?.[1] ?? '', headers };
      if (s.request && s.response && !s.opened) {
        s.opened = true;
        const up = (h: HeaderList): string => h.find(([k]) => k.toLowerCase() === 'upgrade')?.[1] ?? '';
        this.upgrades.push([up(s.request.headers), up(s.response)]);
        this.ws.open(c.stream, { clientDir: s.clientDir, upgrade: { path: s.request.path, host: s.request.host, requestHeaders: s.request.headers, responseHeaders: s.response, firstIndex: 1 } });
        for (const q of s.queued.splice(0)) this.ws.onData(q);
      }
    }
    if (from >= bytes.length) return;
    const rest: TcpChunk = { ...c, buf: Buffer.from(bytes.subarray(from)), start: 0, length: bytes.length - from, offset: c.offset + from };
    if (s.opened) this.ws.onData(rest);
    else s.queued.push(rest);
  }

  onGap(g: TcpGap): void {
    if (this.streams.get(g.stream)?.opened) this.ws.onGap(g);
  }

  onEnd(e: TcpEnd): void {
    if (this.streams.get(e.stream)?.opened) this.ws.onEnd(e);
    if (e.closed) this.streams.delete(e.stream);
  }
}

async function run(capture: string, options: WebSocketDissectorOptions = {}, wrap?: (d: TcpDissector) => TcpDissector): Promise<{ entries: WebSocketEntry[]; splitter: UpgradeSplitter }> {
  const entries: WebSocketEntry[] = [];
  const splitter = new UpgradeSplitter(new WebSocketDissector((e) => entries.push(e), options));
  await feedCapture(capture, wrap ? wrap(splitter) : splitter);
  return { entries: entries.sort((a, b) => a.stream - b.stream || a.index - b.index), splitter };
}

describe(`${CAPTURE} against tshark`, () => {
  test('same messages: time, direction, opcode, mask, payload size, fragments, unmasked text', async () => {
    const { entries } = await run(CAPTURE);
    const expected = tsharkMessages(loadGolden(CAPTURE));
    expect(expected).toHaveLength(17);
    expect(ourMessages(entries)).toEqual(expected);
  });

  test('generic fields from the upgrade: path, url, index after the HTTP exchange; no failure', async () => {
    const { entries } = await run(CAPTURE);
    entries.forEach((e, i) => {
      expect(e).toMatchObject({ protocol: 'ws', method: e.ws_opcode, path: '/service', url: 'websocketstest.com/service', status_code: 0, index: i + 1, ws_compressed: false });
      expect(e.failure).toBeUndefined();
      expect(e.error).toBeUndefined();
    });
    // The client's frames are masked and shown unmasked.
    expect(Buffer.from(entries.find((e) => e.ws_direction === 'client')!.request!.body!).toString()).toBe('version,');
  });

  test('which captures upgrade to WebSocket: this one; zeek/http_docker-http-upgrade.pcap upgrades to `tcp`', async () => {
    expect((await run(CAPTURE)).splitter.upgrades).toEqual([['websocket', 'WebSocket']]);
    // Docker's attach stream after `101 UPGRADED`: no WebSocket golden (tshark shows no frame).
    expect((await run('zeek/http_docker-http-upgrade.pcap')).splitter.upgrades).toEqual([['tcp', 'tcp']]);
  });
});

// ---------------------------------------------------------------------------------------------
// Hand-made frames.

const MASK = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

function frame(opcode: number, payload: Buffer | string, opts: { fin?: boolean; mask?: boolean; rsv1?: boolean; claim?: number } = {}): Buffer {
  const p = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const len = opts.claim ?? p.length;
  const b0 = ((opts.fin ?? true) ? 0x80 : 0) | (opts.rsv1 ? 0x40 : 0) | opcode;
  const m = opts.mask ? 0x80 : 0;
  let head: Buffer;
  if (len < 126) head = Buffer.from([b0, m | len]);
  else if (len < 65536) head = Buffer.from([b0, m | 126, len >> 8, len & 0xff]);
  else {
    head = Buffer.alloc(10);
    head[0] = b0;
    head[1] = m | 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  if (!opts.mask) return Buffer.concat([head, p]);
  const masked = Buffer.from(p);
  for (let i = 0; i < masked.length; i++) masked[i]! ^= MASK[i & 3]!;
  return Buffer.concat([head, MASK, masked]);
}

const close = (code: number, reason: string, mask = false): Buffer => {
  const p = Buffer.alloc(2 + Buffer.byteLength(reason));
  p.writeUInt16BE(code);
  p.write(reason, 2);
  return frame(8, p, { mask });
};

const UPGRADE = (extensions?: string): StreamOpen => ({
  clientDir: 0,
  upgrade: {
    path: '/chat?room=1',
    host: 'example.com',
    requestHeaders: [['Upgrade', 'websocket'], ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ==']],
    responseHeaders: extensions ? [['Upgrade', 'websocket'], ['Sec-WebSocket-Extensions', extensions]] : [['Upgrade', 'websocket']],
    firstIndex: 2,
  },
});

class Feed {
  readonly entries: WebSocketEntry[] = [];
  readonly d: WebSocketDissector;
  /** The upgrade exchange took the first bytes: frames start at these offsets. */
  private readonly offsets: [number, number] = [180, 129];
  private ended = 0;

  constructor(options: WebSocketDissectorOptions = {}, info: StreamOpen = UPGRADE(), readonly stream = 9) {
    this.d = new WebSocketDissector((e) => this.entries.push(e), options);
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

  end(): WebSocketEntry[] {
    for (const dir of [0, 1] as const) this.d.onEnd({ stream: this.stream, dir, offset: this.offsets[dir], reason: 'fin', sec: 0, nsec: 0, closed: ++this.ended === 2 });
    return this.entries.sort((a, b) => a.index - b.index);
  }
}

type Script = [TcpDirection, Buffer][];

const LONG16 = 'x'.repeat(300);
const LONG64 = Buffer.alloc(70_000, 0x61);

const CONVERSATION: Script = [
  [0, frame(1, 'hel', { fin: false, mask: true })],
  [0, frame(9, 'are you there', { mask: true })], // ping between fragments
  [1, frame(10, 'are you there')],
  [0, frame(0, 'lo ', { fin: false, mask: true })],
  [0, frame(0, 'world', { mask: true })],
  [1, frame(1, LONG16)],
  [1, frame(2, LONG64)],
  [1, frame(10, 'heartbeat')], // unsolicited pong
  [1, frame(9, '')],
  [0, frame(10, '', { mask: true })],
  [0, close(1000, 'bye', true)],
  [1, close(1011, 'internal error')],
];

const summary = (es: WebSocketEntry[]): unknown[] =>
  es.map((e) => [e.index, e.method, e.ws_direction, e.ws_masked, e.ws_payload_size, e.ws_fragments, e.status_code, e.ws_close_reason, e.failure, e.error]);

const EXPECTED = [
  [2, 'ping', 'client', true, 13, 1, 0, '', undefined, undefined],
  [3, 'text', 'client', true, 11, 3, 0, '', undefined, undefined],
  [4, 'text', 'server', false, 300, 1, 0, '', undefined, undefined],
  [5, 'binary', 'server', false, 70_000, 1, 0, '', undefined, undefined],
  [6, 'pong', 'server', false, 9, 1, 0, '', undefined, undefined],
  [7, 'ping', 'server', false, 0, 1, 0, '', undefined, undefined],
  [8, 'close', 'client', true, 5, 1, 1000, 'bye', undefined, undefined],
  [9, 'close', 'server', false, 16, 1, 1011, 'internal error', 'close 1011: internal error', undefined],
];

function play(script: Script, split?: number, options: WebSocketDissectorOptions = {}, info?: StreamOpen): WebSocketEntry[] {
  const f = new Feed(options, info);
  script.forEach(([dir, bytes], i) => {
    if (split === undefined || split >= bytes.length) f.data(dir, bytes, 1000 + i * 10);
    else f.data(dir, bytes.subarray(0, split), 1000 + i * 10).data(dir, bytes.subarray(split), 1000 + i * 10 + 1);
  });
  return f.end();
}

describe('WebSocket by hand', () => {
  test('fragments reassembled around a ping/pong; 16- and 64-bit lengths; pings paired; closes', () => {
    const es = play(CONVERSATION);
    expect(summary(es)).toEqual(EXPECTED);
    expect(Buffer.from(es[1]!.request!.body!).toString()).toBe('hello world');
    expect(es[1]!.response).toBeNull();
    expect(Buffer.from(es[2]!.response!.body!).toString()).toBe(LONG16);
    expect(es[3]!.response!.body!.length).toBe(65_536);
    expect(es[3]!.response!.truncated).toBe(true);
    // The ping's entry carries the pong; elapsed is the round trip.
    expect(Buffer.from(es[0]!.response!.body!).toString()).toBe('are you there');
    expect(es[0]!.elapsed_time).toBe(10_000);
    expect(es[5]!.response).not.toBeNull();
    expect(es.every((e) => e.path === '/chat?room=1' && e.url === 'example.com/chat?room=1' && e.protocol === 'ws')).toBe(true);
  });

  test('the same entries whatever the segment boundaries', () => {
    for (let split = 1; split < 40; split++) expect([split, summary(play(CONVERSATION, split))]).toEqual([split, EXPECTED]);
    for (const split of [126, 299, 1000, 65_535, 69_999]) expect([split, summary(play(CONVERSATION, split))]).toEqual([split, EXPECTED]);
    const f = new Feed();
    CONVERSATION.slice(0, 6).forEach(([dir, bytes], i) => {
      for (let k = 0; k < bytes.length; k++) f.data(dir, bytes.subarray(k, k + 1), 1000 + i * 10);
    });
    expect(summary(f.end())).toEqual(EXPECTED.slice(0, 3));
  });

  test('a 64-bit length claim allocates nothing; the unfinished message comes out flagged at the end', () => {
    const f = new Feed({ maxBodySize: 100 });
    f.data(1, frame(2, Buffer.alloc(1000, 1), { claim: 2 ** 52 }), 1);
    for (let i = 0; i < 50; i++) f.data(1, Buffer.alloc(10_000, 2), 2);
    const es = f.end();
    expect(es.map((e) => [e.method, e.ws_payload_size, e.response!.body!.length, e.response!.truncated, e.error])).toEqual([['binary', 501_000, 100, true, 'dissection']]);
  });

  test('memory per stream is bounded: a 100 MB frame streamed, 10000 unanswered pings', () => {
    const f = new Feed({ maxBodySize: 4096 });
    let peak = 0;
    f.data(1, frame(2, Buffer.alloc(0), { claim: 100_000_000 }), 1);
    for (let sent = 0; sent < 100_000_000; sent += 1 << 20) {
      f.data(1, Buffer.alloc(Math.min(1 << 20, 100_000_000 - sent)), 2);
      peak = Math.max(peak, f.d.stats().bufferedBytes);
    }
    for (let i = 0; i < 10_000; i++) {
      f.data(0, frame(9, 'p'.repeat(125), { mask: true }), 3);
      peak = Math.max(peak, f.d.stats().bufferedBytes);
    }
    expect(peak).toBeLessThanOrEqual(4096 + 64 * 125 + 14);
    const es = f.end();
    expect(es[0]).toMatchObject({ method: 'binary', ws_payload_size: 100_000_000, response: { truncated: true } });
    expect(es.filter((e) => e.method === 'ping' && e.error === 'pair-not-found')).toHaveLength(10_000);
  });

  test('permessage-deflate with context takeover: later messages inflate with the window', () => {
    const m1 = 'the quick brown fox jumps over the lazy dog; '.repeat(20);
    const m2 = `${m1}and again`;
    const deflate = (text: string, dictionary?: Buffer): Buffer => {
      const out = zlib.deflateRawSync(Buffer.from(text), { finishFlush: zlib.constants.Z_SYNC_FLUSH, ...(dictionary ? { dictionary } : {}) });
      return out.subarray(0, out.length - 4); // RFC 7692 §7.2.1: drop 00 00 ff ff
    };
    const c1 = deflate(m1);
    const c2 = deflate(m2, Buffer.from(m1));
    // The second message really depends on the first.
    let alone: string;
    try {
      alone = zlib.inflateRawSync(Buffer.concat([c2, Buffer.from([0, 0, 0xff, 0xff])]), { finishFlush: zlib.constants.Z_SYNC_FLUSH }).toString();
    } catch (e) {
      alone = String(e);
    }
    expect(alone).not.toBe(m2);
    const half = Math.floor(c2.length / 2);
    const es = play(
      [
        [1, frame(1, c1, { rsv1: true })],
        [1, Buffer.concat([frame(1, c2.subarray(0, half), { rsv1: true, fin: false }), frame(0, c2.subarray(half))])],
        [0, frame(1, deflate('hi'), { rsv1: true, mask: true })],
      ],
      undefined,
      {},
      UPGRADE('permessage-deflate; client_max_window_bits'),
    );
    expect(es.map((e) => [e.ws_direction, e.ws_compressed, e.ws_inflate_failed, Buffer.from((e.response ?? e.request)!.body!).toString(), e.ws_payload_size])).toEqual([
      ['server', true, false, m1, c1.length],
      ['server', true, false, m2, c2.length],
      ['client', true, false, 'hi', deflate('hi').length],
    ]);
  });

  test('permessage-deflate: no_context_takeover; output bounded; a lost window is flagged, not guessed', () => {
    const deflate = (text: string): Buffer => {
      const out = zlib.deflateRawSync(Buffer.from(text), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
      return out.subarray(0, out.length - 4);
    };
    const bomb = deflate('\0'.repeat(1_000_000));
    const es = play(
      [
        [1, frame(1, deflate('one'), { rsv1: true })],
        [1, frame(2, bomb, { rsv1: true })],
        [1, frame(1, deflate('two'), { rsv1: true })],
      ],
      undefined,
      { maxBodySize: 1024 },
      UPGRADE('permessage-deflate; server_no_context_takeover'),
    );
    expect(es.map((e) => [e.ws_inflate_failed, e.response!.truncated, e.response!.body!.length <= 1024])).toEqual([
      [false, false, true],
      [false, true, true],
      [false, false, true],
    ]);
    // The bomb comes out as the first bytes of its output, up to the bound (an input byte of it
    // inflates to up to 258 bytes: the longest prefix that fits stops short of the bound).
    expect(es[1]!.response!.body!.length).toBeGreaterThan(1024 - 258);
    expect(es[1]!.response!.body!.every((b) => b === 0)).toBe(true);
    expect(Buffer.from(es[2]!.response!.body!).toString()).toBe('two');
    // With context takeover, the message after the one that could not be inflated is flagged.
    const taken = play(
      [
        [1, frame(2, bomb, { rsv1: true })],
        [1, frame(1, deflate('two'), { rsv1: true })],
      ],
      undefined,
      { maxBodySize: 1024 },
      UPGRADE('permessage-deflate'),
    );
    expect(taken.map((e) => [e.ws_inflate_failed, e.response!.truncated])).toEqual([
      [false, true],
      [true, true],
    ]);
    // A corrupt message is shown compressed and flagged.
    const corrupt = play([[1, frame(1, Buffer.from([0xff, 0xff, 0xff, 0x00]), { rsv1: true })]], undefined, {}, UPGRADE('permessage-deflate'));
    expect(corrupt.map((e) => [e.ws_inflate_failed, e.response!.truncated, e.response!.body!.length])).toEqual([[true, true, 4]]);
  });

  test('a gap inside a payload keeps the message (flagged); a gap at a header resyncs at the next frame', () => {
    const f = new Feed();
    const big = frame(1, 'a'.repeat(1000));
    f.data(1, big.subarray(0, 500), 1).gap(1, 300).data(1, big.subarray(800), 2).data(1, frame(1, 'next'), 3);
    f.data(0, frame(1, 'abc', { mask: true }).subarray(0, 3), 4).gap(0, 5).data(0, Buffer.from([0x17, 0x99]), 5).data(0, frame(1, 'resumed', { mask: true }), 6);
    const es = f.end();
    expect(es.map((e) => [e.ws_direction, e.ws_payload_size, e.error, Buffer.from((e.response ?? e.request)!.body!).toString().slice(0, 10)])).toEqual([
      ['server', 1000, 'dissection', 'aaaaaaaaaa'],
      ['server', 4, undefined, 'next'],
      ['client', 7, undefined, 'resumed'],
    ]);
    expect(f.d.stats().resyncs).toBe(1);
  });

  test('an unanswered ping is pair-not-found; without the upgrade the masked side is the client', () => {
    const es = play([[1, frame(9, 'x')]]);
    expect(es.map((e) => [e.method, e.error])).toEqual([['ping', 'pair-not-found']]);
    const bare = play(
      [
        [1, frame(1, 'from client', { mask: true })],
        [0, frame(1, 'from server')],
      ],
      undefined,
      {},
      { clientDir: undefined },
    );
    expect(bare.map((e) => [e.ws_direction, e.path, e.index])).toEqual([
      ['client', '', 0],
      ['server', '', 1],
    ]);
  });

  test('joined mid-stream: resumes at the first chunk that starts a frame', () => {
    const f = new Feed({}, { clientDir: undefined });
    f.data(1, frame(1, 'a'.repeat(200)).subarray(50), 1, true).data(1, frame(1, 'whole'), 2);
    expect(f.end().map((e) => [Buffer.from((e.response ?? e.request)!.body!).toString(), e.error])).toEqual([['whole', undefined]]);
  });

  test('protocol errors (reserved opcode, oversized control frame) lose framing until a plausible frame', () => {
    const f = new Feed();
    f.data(1, Buffer.from([0x83, 0x01, 0x00]), 1).data(1, frame(1, 'ok'), 2);
    f.data(1, Buffer.from([0x89, 0x7e, 0x00, 0xc8]), 3).data(1, frame(1, 'ok2'), 4);
    expect(f.end().map((e) => Buffer.from(e.response!.body!).toString())).toEqual(['ok', 'ok2']);
    expect(f.d.stats().protocolErrors).toBe(2);
  });

  test('detect never claims: WebSocket comes only through the upgrade hand-off', () => {
    expect(WEBSOCKET_PROTOCOL.ports).toEqual([]);
    for (const [dir, bytes] of CONVERSATION) expect(WEBSOCKET_PROTOCOL.detect(bytes, dir === 0)).toBe('no');
  });
});

// ---------------------------------------------------------------------------------------------
// Robustness.


describe('damaged', () => {
  test('the capture with bytes flipped, chunks turned into gaps, or cut: never throws, bounded; after holes, unflagged messages are intact', async () => {
    const clean = await run(CAPTURE);
    const cleanText = new Set(ourMessages(clean.entries).map((m) => JSON.stringify(m)));
    let changed = 0;
    for (const mode of ['flip', 'gap', 'truncate'] as const) {
      for (let seed = 1; seed <= 6; seed++) {
        const rand = prng(seed);
        let chunks = 0;
        const wrap = (t: TcpDissector): TcpDissector => ({
          open: (s, i) => t.open(s, i),
          flush: () => t.flush(),
          onGap: (g) => t.onGap(g),
          onEnd: (e) => t.onEnd(e),
          onData: (c) => {
            // Leave the HTTP upgrade (the first chunk each way) intact.
            if (chunks++ < 3 || rand() > 0.3) return t.onData(c);
            if (mode === 'gap') return t.onGap({ stream: c.stream, dir: c.dir, offset: c.offset, length: c.length, reason: 'acked', sec: 0, nsec: 0 });
            const copy = Buffer.from(c.buf.subarray(c.start, c.start + c.length));
            if (mode === 'flip') copy[Math.floor(rand() * copy.length)] = Math.floor(rand() * 256);
            return t.onData({ ...c, buf: copy, start: 0, length: mode === 'truncate' ? Math.floor(rand() * c.length) : c.length });
          },
        });
        const r = await run(CAPTURE, { maxBodySize: 16 }, wrap);
        const full = await run(CAPTURE, {}, wrap);
        for (const e of r.entries) expect((e.request ?? e.response)?.body?.length ?? 0).toBeLessThanOrEqual(16);
        // Holes only remove bytes: every message not flagged is one of the clean capture's, intact.
        if (mode === 'gap') for (const m of ourMessages(full.entries.filter((e) => e.error === undefined))) expect(cleanText.has(JSON.stringify(m))).toBe(true);
        if (JSON.stringify(ourMessages(full.entries)) !== JSON.stringify(ourMessages(clean.entries))) changed++;
      }
    }
    // The damage reached the dissector in some runs (messages lost or flagged).
    expect(changed).toBeGreaterThan(0);
  });

  test('random bytes after an upgrade: never throws, bounded', () => {
    const rand = prng(11);
    for (let i = 0; i < 300; i++) {
      const f = new Feed({ maxBodySize: 64 }, i % 2 ? UPGRADE('permessage-deflate') : { clientDir: undefined });
      for (let k = 0; k < 8; k++) f.data((k % 2) as TcpDirection, Buffer.from(Array.from({ length: Math.floor(rand() * 200) }, () => Math.floor(rand() * 256))), k);
      for (const e of f.end()) expect((e.request ?? e.response)?.body?.length ?? 0).toBeLessThanOrEqual(64);
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
  test(`${CAPTURE}: the HTTP dissector hands the upgrade over; the same entries as with the test splitter`, async () => {
    const direct = await run(CAPTURE);
    const viaRouter: WebSocketEntry[] = [];
    const router = await routed(CAPTURE, { ws: (e) => viaRouter.push(e) });
    expect(viaRouter.sort((a, b) => a.index - b.index)).toEqual(direct.entries);
    expect(router.stats().claimed).toMatchObject({ http: 1, mysql: 0, mongodb: 0 });
  });
});
