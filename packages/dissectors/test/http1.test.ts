import { readFileSync } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { decodePacket, FlowTable, IPPROTO_TCP, newL4Packet, packetSide, readCaptureFile, TcpReassembler, type TcpChunk, type TcpDirection, type TcpEndReason } from '@kubeshark-mcp/capture';
import { capturePath, GOLDEN_DIR } from '@kubeshark-mcp/testkit';
import { HttpDissector, type HttpDissectorOptions, type HttpEntry, type HttpTime, type HttpUpgrade } from '../src';
import { HTTP1_CAPTURES } from './support/captures';

/**
 * The HTTP/1.x dissector against tshark's HTTP fields for the same captures
 * (fixtures/golden/<capture>/http.psv), then behaviour by behaviour on hand-made streams.
 *
 * What tshark reports and how we compare: tshark puts each message on the frame that completed
 * it (its last segment), pairs them with http.request_in / http.response_in and computes
 * http.time as the difference of those two frame times. Our entries carry each message's first
 * and last byte times, so per tcp.stream, in order, we compare method, host, uri, status, the
 * request's last-byte time with the request frame's time, and `response_end - request_end` with
 * http.time, to the nanosecond. `elapsed_time` is deliberately first byte to first byte (what
 * Kubeshark reports, and what the latency of a large response means to a user); it equals
 * http.time exactly when both messages fit in one packet, which is checked too.
 */

const GOLDEN = HTTP1_CAPTURES;

/**
 * Where we deliberately answer requests tshark leaves unanswered: responses that lost bytes
 * inside a Content-Length body. tshark cannot reassemble such a response and shows no
 * response; we skip the hole, pair the request with its response and flag the entry
 * `dissection` (body `truncated`). `dissection` counts those entries; `uris` lists every
 * request tshark shows unanswered and we answer.
 */
const DIFFERENCES: Record<string, { dissection: number; uris: string[] }> = {
  // 14 of the 70 body bytes of the response to /2 are missing.
  'suricata-verify/http-gap-simple.pcap': { dissection: 1, uris: ['/2'] },
  // The 733-byte body of the second response is missing entirely. The third response (34152
  // bytes) is all in the capture, but tshark's reassembly does not recover after the hole.
  'suricata-verify/http-pipeline-files-with-gap.pcap': {
    dissection: 1,
    uris: ['/wp-content/themes/wall-street/js/skip-link-focus-fix.js?ver=1.1.4', '/wp-content/uploads/2015/04/NSL-InvestorPitch-9.007-420x420.jpg'],
  },
};

interface PsvRow {
  frame: number;
  time: string;
  stream: number;
  method: string;
  host: string;
  uri: string;
  code: string;
  requestIn: string;
  responseIn: string;
  httpTime: string;
}

function loadPsv(capture: string): PsvRow[] {
  const [head, ...lines] = readFileSync(path.join(GOLDEN_DIR, capture, 'http.psv'), 'utf8').split('\n');
  const cols = head!.split('|');
  const at = (f: string[], name: string): string => f[cols.indexOf(name)] ?? '';
  return lines
    .filter((l) => l.trim() !== '')
    .map((l) => l.split('|'))
    .map((f) => ({
      frame: Number(at(f, 'frame.number')),
      time: at(f, 'frame.time_epoch'),
      stream: Number(at(f, 'tcp.stream')),
      method: at(f, 'http.request.method'),
      host: at(f, 'http.host'),
      uri: at(f, 'http.request.uri'),
      code: at(f, 'http.response.code'),
      requestIn: at(f, 'http.request_in'),
      responseIn: at(f, 'http.response_in'),
      httpTime: at(f, 'http.time'),
    }));
}

interface Exchange {
  stream: number;
  method: string;
  host: string;
  uri: string;
  status: number;
  /** Time of the frame tshark reports the request on (sec.nsec, 9 digits). */
  requestTime: string;
  /** http.time in nanoseconds ('' without a response). */
  httpTimeNs: string;
}

const fmt = (t: HttpTime | null): string => (t ? `${t.sec}.${String(t.nsec).padStart(9, '0')}` : '');
const diffNs = (a: HttpTime, b: HttpTime): string => String((a.sec - b.sec) * 1e9 + (a.nsec - b.nsec));
const secToNs = (s: string): string => {
  const [i, f = ''] = s.split('.');
  return String(Number(i) * 1e9 + Number(f.padEnd(9, '0')));
};

/**
 * tshark's exchanges per tcp.stream in request order. Interim (1xx) responses are left out:
 * tshark lists them as responses without a request; for us they do not complete a pair.
 */
function tsharkExchanges(rows: PsvRow[]): Exchange[] {
  const byFrame = new Map(rows.map((r) => [r.frame, r]));
  const out: Exchange[] = [];
  for (const r of rows) {
    if (r.method !== '') {
      const res = r.responseIn === '' ? undefined : byFrame.get(Number(r.responseIn));
      out.push({
        stream: r.stream,
        method: r.method,
        host: r.host,
        uri: r.uri,
        status: res ? Number(res.code) : 0,
        requestTime: r.time,
        httpTimeNs: res ? secToNs(res.httpTime) : '',
      });
    } else if (r.requestIn === '' && !r.code.startsWith('1')) {
      out.push({ stream: r.stream, method: '', host: '', uri: '', status: Number(r.code), requestTime: '', httpTimeNs: '' });
    }
  }
  // Streams interleave in frame order; ours come per stream. The sort is stable.
  return out.sort((a, b) => a.stream - b.stream);
}

function ourExchanges(entries: HttpEntry[], tcpStream: Map<number, number>): Exchange[] {
  return entries.map((e) => {
    const req = e.request;
    const host = req?.headers.find(([k]) => k.toLowerCase() === 'host')?.[1] ?? '';
    const { request_end: qEnd, response_end: rEnd } = e.times;
    return {
      stream: tcpStream.get(e.stream)!,
      method: e.method,
      host,
      uri: e.path,
      status: e.status_code,
      requestTime: fmt(qEnd),
      httpTimeNs: qEnd && rEnd && e.response ? diffNs(rEnd, qEnd) : '',
    };
  });
}

interface Run {
  entries: HttpEntry[];
  /** Flow index -> tshark's tcp.stream (order of first packet). */
  tcpStream: Map<number, number>;
  dissector: HttpDissector;
}

/** Reader -> decodePacket -> FlowTable (flow index) -> packetSide -> reassembler -> dissector, as the worker runs them. */
async function runCapture(capture: string, options: HttpDissectorOptions = {}): Promise<Run> {
  const entries: HttpEntry[] = [];
  const dissector = new HttpDissector((e) => entries.push(e), options);
  const reassembler = new TcpReassembler(dissector);
  const flows = new FlowTable();
  const l4 = newL4Packet();
  const tcpStream = new Map<number, number>();
  const result = await readCaptureFile(capturePath(capture), (p) => {
    if (decodePacket(p, l4) !== 0) return;
    const idx = flows.add(p, l4);
    if (l4.protocol !== IPPROTO_TCP) return;
    if (!tcpStream.has(idx)) tcpStream.set(idx, tcpStream.size);
    reassembler.segmentFromPacket(idx, packetSide(p, l4), p, l4);
  });
  expect(result.error).toBeUndefined();
  reassembler.flush();
  // Entries come out in request order per stream; streams interleave, so order by stream.
  entries.sort((a, b) => tcpStream.get(a.stream)! - tcpStream.get(b.stream)! || a.index - b.index);
  return { entries, tcpStream, dissector };
}

/** Exchanges where elapsed_time was compared with http.time, over all captures. */
let singlePacketCompared = 0;

describe.each(GOLDEN)('%s against tshark', (capture) => {
  let run: Run;
  const rows = loadPsv(capture);

  beforeAll(async () => {
    run = await runCapture(capture);
  });

  test('same exchanges per tcp.stream, same pairing, same frame times and http.time', () => {
    const expected = tsharkExchanges(rows);
    const diff = DIFFERENCES[capture] ?? { dissection: 0, uris: [] };
    const damaged = run.entries.filter((e) => e.error === 'dissection');
    expect(damaged.length).toBe(diff.dissection);
    for (const e of damaged) expect(e.response).toMatchObject({ truncated: true });
    // Deliberate difference (see DIFFERENCES): tshark shows these requests unanswered.
    const actual = ourExchanges(run.entries, run.tcpStream).map((x) => (diff.uris.includes(x.uri) ? { ...x, status: x.status === 0 ? -1 : 0, httpTimeNs: '' } : x));
    expect(actual).toEqual(expected);
  });

  test('url is host + target; pair-not-found exactly when there is no response', () => {
    for (const e of run.entries) {
      const host = e.request?.headers.find(([k]) => k.toLowerCase() === 'host')?.[1] ?? '';
      expect(e.url).toBe(host + e.path);
      expect(e.protocol).toBe('http');
      expect(e.error === 'pair-not-found').toBe(e.request === null || e.response === null);
      // The protocol's own failure: a 4xx or 5xx status, worded as the status line has it.
      if (e.status_code >= 400) expect(e.failure).toBe(`HTTP ${e.status_code}${e.status_text ? ` ${e.status_text}` : ''}`);
      else expect(e.failure).toBeUndefined();
    }
  });

  test('elapsed_time is first byte to first byte; it equals http.time when both messages are one packet', () => {
    const byRequestTime = new Map(rows.filter((r) => r.method !== '').map((r) => [`${r.stream}/${r.time}`, r]));
    let compared = 0;
    for (const e of run.entries) {
      const t = e.times;
      if (!t.request_start || !t.response_start) {
        expect(e.elapsed_time).toBe(0);
        continue;
      }
      expect(e.elapsed_time).toBe(Math.round(Number(diffNs(t.response_start, t.request_start)) / 1000));
      expect(e.timestamp).toBe(t.request_start.sec * 1e6 + Math.floor(t.request_start.nsec / 1000));
      const single = fmt(t.request_start) === fmt(t.request_end) && fmt(t.response_start) === fmt(t.response_end);
      const row = byRequestTime.get(`${run.tcpStream.get(e.stream)}/${fmt(t.request_end)}`);
      if (single && row && row.responseIn !== '' && e.error === undefined) {
        expect(e.elapsed_time).toBe(Math.round(Number(secToNs(rows.find((r) => r.frame === Number(row.responseIn))!.httpTime)) / 1000));
        compared++;
      }
    }
    singlePacketCompared += compared;
  });
}); // describe.each

describe('what the golden captures exercise', () => {
  test('elapsed_time was compared with http.time on single-packet exchanges', () => {
    // Most golden responses span several packets (tshark then reports them on their last one);
    // four exchanges (ndpi, pipelined, gap-simple) fit one packet each way.
    expect(singlePacketCompared).toBeGreaterThanOrEqual(4);
  });

  test('http_get-gzip: the gzip body is decompressed', async () => {
    const { entries } = await runCapture('zeek/http_get-gzip.pcap');
    const res = entries[0]!.response!;
    expect(res.body_size).toBe(165);
    expect(res.truncated).toBe(false);
    expect(JSON.parse(Buffer.from(res.body!).toString('utf8'))).toMatchObject({ gzipped: true });
  });

  test('http_100-continue: the 100 does not complete the pair; the POST gets the 200 and its 2001-byte body', async () => {
    const { entries } = await runCapture('zeek/http_100-continue.pcap');
    expect(entries).toHaveLength(1);
    const e = entries[0]!;
    expect(e).toMatchObject({ method: 'POST', status_code: 200, request: { body_size: 2001, truncated: false } });
    expect(e.response!.headers.find(([k]) => k === 'Transfer-Encoding')).toEqual(['Transfer-Encoding', 'chunked']);
    expect(e.error).toBeUndefined();
  });

  test('1000 requests, one dropped response: request 1 is pair-not-found and the other 999 pair one to one', async () => {
    // The capture lost the first response entirely (a 238-byte gap at the start of the server
    // direction). tshark leaves the first request unanswered and pairs every later one with
    // the next response; so do we: after a gap, a response pairs with the latest request sent
    // before it and the earlier unanswered ones are given up.
    const { entries, dissector } = await runCapture('zeek/http_1000-requests-one-dropped-response.pcap.gz');
    expect(entries).toHaveLength(1000);
    expect(entries[0]).toMatchObject({ error: 'pair-not-found', status_code: 0, response: null });
    expect(entries.slice(1).every((e) => e.status_code === 200 && e.error === undefined)).toBe(true);
    expect(dissector.stats().errors['pair-not-found']).toBe(1);
  });

  test('a smaller body limit truncates stored bodies but not sizes', async () => {
    const { entries } = await runCapture('zeek/http_pipelined-requests.pcap', { maxBodySize: 100 });
    const big = entries.find((e) => e.response!.body_size === 27579)!;
    expect(big.response!.body!.length).toBe(100);
    expect(big.response!.truncated).toBe(true);
  });
});

/** Feeds hand-made bytes as the reassembler would; each `data` call is one packet at time `t` (ms). */
class Feed {
  readonly entries: HttpEntry[] = [];
  readonly d: HttpDissector;
  private readonly offsets: [number, number] = [0, 0];
  private ended = 0;

  constructor(
    options: HttpDissectorOptions = {},
    readonly stream = 7,
  ) {
    this.d = new HttpDissector((e) => this.entries.push(e), options);
  }

  data(dir: TcpDirection, bytes: string | Uint8Array, t: number, midStream = false): this {
    const buf = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
    const sec = Math.floor(t / 1000);
    const nsec = (t % 1000) * 1e6;
    // Surround the bytes with junk: the dissector must honour start/length.
    const wrapped = Buffer.concat([Buffer.from('xx'), buf, Buffer.from('yy')]);
    const chunk: TcpChunk = { stream: this.stream, dir, offset: this.offsets[dir], buf: wrapped, start: 2, length: buf.length, firstSec: sec, firstNsec: nsec, lastSec: sec, lastNsec: nsec, midStream };
    this.d.onData(chunk);
    wrapped.fill(0); // the view is only valid during the call
    this.offsets[dir] += buf.length;
    return this;
  }

  gap(dir: TcpDirection, length: number, t: number): this {
    this.d.onGap({ stream: this.stream, dir, offset: this.offsets[dir], length, reason: 'acked', sec: Math.floor(t / 1000), nsec: 0 });
    this.offsets[dir] += length;
    return this;
  }

  end(reason: TcpEndReason = 'fin'): HttpEntry[] {
    for (const dir of [0, 1] as const) {
      this.d.onEnd({ stream: this.stream, dir, offset: this.offsets[dir], reason, sec: 0, nsec: 0, closed: ++this.ended === 2 });
    }
    return this.entries;
  }
}

const REQ = (p: string, extra = ''): string => `GET ${p} HTTP/1.1\r\nHost: example.com\r\n${extra}\r\n`;
const RES = (body: string, extra = ''): string => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n${extra}\r\n${body}`;

describe('HTTP/1.x by hand', () => {
  test('keep-alive pipelining pairs in order; headers keep order, case and duplicates', () => {
    const f = new Feed();
    f.data(0, REQ('/a') + REQ('/b', 'X-A: 1\r\nx-a: 2\r\n'), 1000);
    f.data(1, RES('one') + RES('two', 'Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n'), 1010);
    const es = f.end();
    expect(es.map((e) => [e.index, e.path, e.url, e.status_code, Buffer.from(e.response!.body!).toString()])).toEqual([
      [0, '/a', 'example.com/a', 200, 'one'],
      [1, '/b', 'example.com/b', 200, 'two'],
    ]);
    expect(es[1]!.request!.headers).toEqual([['Host', 'example.com'], ['X-A', '1'], ['x-a', '2']]);
    expect(es[1]!.response!.headers.filter(([k]) => k === 'Set-Cookie')).toEqual([['Set-Cookie', 'a=1'], ['Set-Cookie', 'b=2']]);
    expect(es[0]!.elapsed_time).toBe(10_000);
    expect(es[0]!.timestamp).toBe(1_000_000);
  });

  test('byte-at-a-time delivery parses the same as whole messages', () => {
    const whole = new Feed().data(0, REQ('/x'), 1).data(1, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-T: 1\r\n\r\n', 2).end();
    const f = new Feed();
    for (const c of REQ('/x')) f.data(0, c, 1);
    for (const c of 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-T: 1\r\n\r\n') f.data(1, c, 2);
    const bytewise = f.end();
    expect(bytewise).toEqual(whole);
    expect(Buffer.from(whole[0]!.response!.body!).toString()).toBe('abcde');
    expect(whole[0]!.response!.headers).toContainEqual(['X-T', '1']);
  });

  test('gzip, deflate (zlib and raw) and br bodies are decoded, bounded by maxBodySize', () => {
    const text = 'hello '.repeat(1000);
    for (const [enc, data] of [
      ['gzip', zlib.gzipSync(text)],
      ['deflate', zlib.deflateSync(text)],
      ['deflate', zlib.deflateRawSync(text)],
      ['br', zlib.brotliCompressSync(text)],
    ] as const) {
      const full = new Feed().data(0, REQ('/z'), 1).data(1, `HTTP/1.1 200 OK\r\nContent-Encoding: ${enc}\r\nContent-Length: ${data.length}\r\n\r\n`, 2).data(1, data, 3).end();
      expect([enc, Buffer.from(full[0]!.response!.body!).toString(), full[0]!.response!.truncated, full[0]!.response!.body_size]).toEqual([enc, text, false, data.length]);
      const small = new Feed({ maxBodySize: 100 }).data(0, REQ('/z'), 1).data(1, `HTTP/1.1 200 OK\r\nContent-Encoding: ${enc}\r\nContent-Length: ${data.length}\r\n\r\n`, 2).data(1, data, 3).end();
      const body = Buffer.from(small[0]!.response!.body!).toString();
      expect(body.length).toBeLessThanOrEqual(100);
      expect(text.startsWith(body)).toBe(true);
      expect(small[0]!.response!.truncated).toBe(true);
    }
  });

  test('a decompression bomb is cut at maxBodySize without inflating it', () => {
    const bomb = zlib.gzipSync(Buffer.alloc(50 * 1024 * 1024));
    const f = new Feed({ maxBodySize: bomb.length + 10 });
    f.data(0, REQ('/b'), 1).data(1, `HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: ${bomb.length}\r\n\r\n`, 2).data(1, bomb, 3);
    const res = f.end()[0]!.response!;
    expect(res.body!.length).toBeLessThanOrEqual(bomb.length + 10);
    expect(res.body!.every((b) => b === 0)).toBe(true);
    expect(res.truncated).toBe(true);
  });

  test('HEAD, 204 and 304 responses have no body even with Content-Length', () => {
    const f = new Feed();
    f.data(0, 'HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n' + REQ('/n') + REQ('/m'), 1);
    f.data(1, 'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n', 2);
    expect(f.end().map((e) => [e.method, e.status_code, e.response!.body_size, e.error])).toEqual([
      ['HEAD', 200, 0, undefined],
      ['GET', 204, 0, undefined],
      ['GET', 304, 0, undefined],
    ]);
  });

  test('on a connection that stays open, a request unanswered for the response timeout comes out as pair-not-found', () => {
    const f = new Feed({ responseTimeoutMs: 60_000 });
    f.data(0, REQ('/slow'), 1000).data(0, REQ('/answered'), 2000);
    f.d.advance(30, 0);
    expect(f.entries).toEqual([]);
    f.d.advance(61, 0);
    // The first is given up; the second waits behind nothing now but is still within its time.
    expect(f.entries.map((e) => [e.path, e.error])).toEqual([['/slow', 'pair-not-found']]);
    f.d.advance(62, 500_000_000);
    expect(f.entries.map((e) => [e.path, e.error])).toEqual([
      ['/slow', 'pair-not-found'],
      ['/answered', 'pair-not-found'],
    ]);
    // Nothing is emitted twice when the connection then ends.
    expect(f.end().map((e) => e.path)).toEqual(['/slow', '/answered']);
  });

  test('a response without length reads until close; requests left unanswered are pair-not-found', () => {
    const f = new Feed();
    f.data(0, 'GET /1 HTTP/1.0\r\n\r\n', 1).data(1, 'HTTP/1.0 200 OK\r\n\r\npart1', 2).data(1, 'part2', 3);
    const es = f.end();
    expect(es).toHaveLength(1);
    expect(Buffer.from(es[0]!.response!.body!).toString()).toBe('part1part2');
    expect(es[0]!.times.response_end).toEqual({ sec: 0, nsec: 3e6 });
    const g = new Feed().data(0, REQ('/a') + REQ('/b'), 1).data(1, RES('x'), 2);
    expect(g.entries).toHaveLength(1);
    expect(g.end().map((e) => [e.path, e.status_code, e.error])).toEqual([
      ['/a', 200, undefined],
      ['/b', 0, 'pair-not-found'],
    ]);
  });

  test('101 Switching Protocols completes the pair and stops HTTP parsing on the connection', () => {
    const f = new Feed();
    f.data(0, REQ('/ws', 'Upgrade: websocket\r\nConnection: Upgrade\r\n'), 1).data(1, 'HTTP/1.1 101 Switching Protocols\r\n\r\n', 2);
    f.data(1, '\x81\x05hello', 3).data(0, 'GET / HTTP/1.1\r\n\r\n', 4);
    expect(f.end().map((e) => [e.status_code, e.error])).toEqual([[101, undefined]]);
  });

  test('onUpgrade gets the boundary per direction and the bytes already past it, with the next entry index', () => {
    const ups: HttpUpgrade[] = [];
    const f = new Feed({ onUpgrade: (u) => ups.push(u) });
    const req = REQ('/ws', 'Upgrade: websocket\r\nConnection: Upgrade\r\n');
    const res = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\n\r\n';
    f.data(0, REQ('/first'), 1).data(1, RES('x'), 2);
    f.data(0, req, 3).data(1, res + '\x81\x05hello', 4);
    f.data(1, '\x81\x01!', 5);
    expect(f.end().map((e) => [e.index, e.status_code])).toEqual([
      [0, 200],
      [1, 101],
    ]);
    expect(ups).toHaveLength(1);
    const u = ups[0]!;
    expect(u).toMatchObject({ stream: 7, protocol: 'websocket', path: '/ws', host: 'example.com', firstIndex: 2 });
    expect(u.boundary).toEqual([REQ('/first').length + req.length, RES('x').length + res.length]);
    expect(u.rest[0]).toBeNull();
    expect(u.rest[1]).toMatchObject({ offset: u.boundary[1], sec: 0, nsec: 4e6 });
    expect(Buffer.from(u.rest[1]!.bytes).toString('latin1')).toBe('\x81\x05hello');
  });

  test('4xx and 5xx responses carry the failure as the status line words it', () => {
    const f = new Feed();
    f.data(0, REQ('/a') + REQ('/b') + REQ('/c'), 1);
    f.data(1, 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\nHTTP/1.1 503\r\nContent-Length: 0\r\n\r\n' + RES('ok'), 2);
    expect(f.end().map((e) => [e.status_code, e.failure])).toEqual([
      [404, 'HTTP 404 Not Found'],
      [503, 'HTTP 503'],
      [200, undefined],
    ]);
  });

  test('a gap inside headers ends the message with `dissection`; parsing resyncs at the next start line', () => {
    const f = new Feed();
    f.data(0, REQ('/a') + REQ('/b'), 1);
    f.data(1, 'HTTP/1.1 200 OK\r\nCont', 2).gap(1, 30, 3).data(1, 'junk tail\r\nmore\r\n' + RES('bb'), 4);
    const es = f.end();
    // The damaged first response had no parsed header block, so it is lost with the gap; the
    // resynced response goes to the latest request sent before it.
    expect(es.map((e) => [e.path, e.status_code, e.error])).toEqual([
      ['/a', 0, 'pair-not-found'],
      ['/b', 200, undefined],
    ]);
  });

  test('a gap inside a chunked body ends the message with `dissection`', () => {
    const f = new Feed();
    f.data(0, REQ('/a'), 1).data(1, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123', 2).gap(1, 5, 3).data(1, 'rest', 4);
    const es = f.end();
    expect(es.map((e) => [e.status_code, e.error, e.response!.truncated])).toEqual([[200, 'dissection', true]]);
  });

  test('streams that are not HTTP are ignored; a mid-stream join resyncs at the next message', () => {
    const f = new Feed();
    f.data(0, '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03', 1).data(1, 'SSH-2.0-OpenSSH\r\n', 2);
    expect(f.end()).toEqual([]);
    const g = new Feed();
    g.data(1, 'tail of an earlier body\r\n' + RES('ok'), 5, true).data(0, REQ('/late'), 6, true).data(1, RES('ok2'), 7, true);
    // The response seen before any request is an orphan (its request was before the capture).
    expect(g.end().map((e) => [e.method, e.path, e.status_code, e.error])).toEqual([
      ['', '', 200, 'pair-not-found'],
      ['GET', '/late', 200, undefined],
    ]);
  });

  test('100-continue: the interim response is skipped and the final one waits for the request body', () => {
    const f = new Feed();
    f.data(0, 'POST /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 6\r\n\r\n', 1);
    f.data(1, 'HTTP/1.1 100 Continue\r\n\r\n', 2);
    f.data(0, 'abc', 3);
    f.data(1, RES('done'), 4); // an early final response: the request body is not complete yet
    expect(f.entries).toEqual([]);
    f.data(0, 'def', 5);
    expect(f.entries.map((e) => [e.status_code, Buffer.from(e.request!.body!).toString(), e.elapsed_time, e.error])).toEqual([[200, 'abcdef', 3000, undefined]]);
    // A request body that never completes still comes out, flagged, when the connection ends.
    const g = new Feed();
    g.data(0, 'POST /up HTTP/1.1\r\nContent-Length: 6\r\n\r\nab', 1).data(1, RES('no'), 2);
    expect(g.end().map((e) => [e.status_code, e.error, e.request!.truncated])).toEqual([[200, 'dissection', true]]);
  });

  test('a gap in the request direction resyncs at the next request line', () => {
    const f = new Feed();
    f.data(0, REQ('/a'), 1).data(0, 'GET /lost HTTP/1.1\r\nHo', 2).gap(0, 20, 3).data(0, 'st: x\r\n\r\n' + REQ('/c'), 4);
    f.data(1, RES('1') + RES('3'), 5);
    expect(f.end().map((e) => [e.path, e.status_code, e.error])).toEqual([
      ['/a', 200, undefined],
      ['/c', 200, undefined],
    ]);
  });

  test('other protocols are rejected on their first bytes; unknown bytes after a gap are scanned only so far', () => {
    const f = new Feed();
    f.data(0, '\x00\x00\x00\x08\x04\xd2\x16/', 1).data(1, 'R\x00\x00\x00\x08', 2);
    expect(f.end()).toEqual([]);
    expect(f.d.stats().httpStreams).toBe(0);
    const g = new Feed();
    g.gap(0, 10, 1);
    for (let i = 0; i < 100; i++) g.data(0, 'x'.repeat(1000) + '\n', 2 + i);
    g.data(0, REQ('/too-late'), 200).data(1, RES('x'), 201);
    // After the gap the client side is scanned for a start line, 64 KiB at most, then given up.
    expect(g.end().map((e) => [e.method, e.status_code, e.error])).toEqual([['', 200, 'pair-not-found']]);
  });

  test('absolute-form targets give the url and path from the target', () => {
    const f = new Feed();
    f.data(0, 'GET http://proxy.example/p?q=1 HTTP/1.1\r\nHost: proxy.example\r\n\r\n', 1).data(1, RES(''), 2);
    expect(f.end().map((e) => [e.url, e.path])).toEqual([['proxy.example/p?q=1', '/p?q=1']]);
  });
});
