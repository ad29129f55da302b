import { decodePacket, FlowTable, IPPROTO_TCP, newL4Packet, packetSide, readCaptureFile, TcpReassembler, type TcpChunk, type TcpDirection, type TcpEnd, type TcpGap } from '@kubeshark-mcp/capture';
import { capturePath } from '@kubeshark-mcp/testkit';
import { DNS_TCP_PROTOCOL, DnsDissector, type DnsEntry } from '../src/dns';
import { HTTP_PROTOCOL, HttpDissector, type HttpEntry } from '../src/http1';
import { StreamRouter, type RoutedProtocol } from '../src/router';
import type { StreamOpen, TcpDissector, TcpProtocol, Verdict } from '../src/stream';
import { feedCapture } from './support/feed';

/**
 * The stream router against real captures (the entries it routes equal those of the dissector
 * fed directly) and behaviour by behaviour: port hints order the questions, content decides,
 * unclaimed streams hold bounded memory, held events replay in order, HTTP upgrades hand the
 * stream over at the right byte.
 */

/** Records what a dissector receives: the opens and every byte per stream and direction. */
class Recorder implements TcpDissector {
  opens: [number, StreamOpen][] = [];
  bytes = new Map<string, number[]>();
  offsets = new Map<string, number>();
  gaps: [number, TcpDirection, number, number][] = [];
  ends: [number, TcpDirection][] = [];
  open(stream: number, info: StreamOpen): void {
    this.opens.push([stream, info]);
  }
  onData(c: TcpChunk): void {
    const k = `${c.stream}/${c.dir}`;
    if (!this.offsets.has(k)) this.offsets.set(k, c.offset);
    const a = this.bytes.get(k) ?? [];
    for (let i = 0; i < c.length; i++) a.push(c.buf[c.start + i]!);
    this.bytes.set(k, a);
  }
  onGap(g: TcpGap): void {
    this.gaps.push([g.stream, g.dir, g.offset, g.length]);
  }
  onEnd(e: TcpEnd): void {
    this.ends.push([e.stream, e.dir]);
  }
  flush(): void {}
}

/** Feeds a capture through the router, as the worker does: clientDir and ports from the first packet and the flow table. */
async function route(capture: string, make: (router: () => StreamRouter) => Omit<ConstructorParameters<typeof StreamRouter>[0], 'facts'>): Promise<StreamRouter> {
  const flows = new FlowTable();
  const clientDirs = new Map<number, TcpDirection | undefined>();
  const get = (): StreamRouter => router;
  const router: StreamRouter = new StreamRouter({
    ...make(get),
    facts: (stream) => {
      const f = flows.get(flows.rowOf(stream));
      return { clientDir: clientDirs.get(stream), ports: [f.client.port, f.server.port] };
    },
  });
  const adaptor: TcpDissector = {
    open: (stream, info) => clientDirs.set(stream, info.clientDir),
    onData: (c) => router.onData(c),
    onGap: (g) => router.onGap(g),
    onEnd: (e) => router.onEnd(e),
    flush: () => {},
  };
  // feedCapture numbers flows in its own table; keep ours in step by feeding the same packets.
  const l4 = newL4Packet();
  const reassembler = new TcpReassembler(adaptor);
  const seen = new Set<number>();
  await readCaptureFile(capturePath(capture), (p) => {
    if (decodePacket(p, l4) !== 0) return;
    const idx = flows.add(p, l4);
    if (l4.protocol !== IPPROTO_TCP) return;
    const side = packetSide(p, l4);
    if (!seen.has(idx)) {
      seen.add(idx);
      const syn = (l4.tcpFlags & 0x02) !== 0;
      const ack = (l4.tcpFlags & 0x10) !== 0;
      clientDirs.set(idx, syn ? (ack ? ((1 - side) as TcpDirection) : side) : undefined);
    }
    reassembler.segmentFromPacket(idx, side, p, l4);
  });
  reassembler.flush();
  return router;
}

describe('routing real captures by content', () => {
  test.each(['zeek/http_pipelined-requests.pcap', 'ndpi/http.pcapng', 'zeek/http_1000-requests-one-dropped-response.pcap.gz', 'zeek/http-vlan-0.pcap'])(
    '%s: the HTTP entries are the ones the HTTP dissector makes on its own',
    async (capture) => {
      const direct: HttpEntry[] = [];
      await feedCapture(capture, new HttpDissector((e) => direct.push(e)));
      const routed: HttpEntry[] = [];
      const dns: DnsEntry[] = [];
      const router = await route(capture, () => ({
        protocols: [
          { protocol: HTTP_PROTOCOL, dissector: new HttpDissector((e) => routed.push(e)) },
          { protocol: DNS_TCP_PROTOCOL, dissector: new DnsDissector((e) => dns.push(e)) },
        ],
      }));
      expect(routed.length).toBeGreaterThan(0);
      expect(routed).toEqual(direct);
      expect(dns).toEqual([]);
      expect(router.stats()).toMatchObject({ pending: 0, pendingBytes: 0 });
    },
  );

  test('DNS over TCP is claimed by content, and its entries are those of the DNS dissector fed directly', async () => {
    const capture = 'suricata-verify/dns-tcp-multirequest-buffer.pcap';
    const direct: DnsEntry[] = [];
    const d = new DnsDissector((e) => direct.push(e));
    await feedCapture(capture, d);
    const routed: DnsEntry[] = [];
    const http: HttpEntry[] = [];
    // The DNS protocol without its port: content alone must claim it.
    const router = await route(capture, () => ({
      protocols: [
        { protocol: HTTP_PROTOCOL, dissector: new HttpDissector((e) => http.push(e)) },
        { protocol: { ...DNS_TCP_PROTOCOL, ports: [] }, dissector: new DnsDissector((e) => routed.push(e)) },
      ],
    }));
    expect(routed.length).toBeGreaterThan(0);
    expect(routed).toEqual(direct);
    expect(http).toEqual([]);
    expect(router.stats().claimed).toMatchObject({ dns: 1, http: 0 });
  });

  test.each(['illustrated-tls/illustrated-tls13.pcap', 'ndpi/tls_1.3_unidirectional_client.pcapng'])('%s: TLS is nobody’s: unclaimed, no entries, nothing held', async (capture) => {
    const rec = new Recorder();
    const router = await route(capture, () => ({
      protocols: [
        { protocol: HTTP_PROTOCOL, dissector: rec },
        { protocol: DNS_TCP_PROTOCOL, dissector: rec },
      ],
    }));
    expect(rec.opens).toEqual([]);
    expect(router.stats()).toMatchObject({ unclaimed: 1, pending: 0, pendingBytes: 0, claimed: { http: 0, dns: 0 } });
  });

  test('HTTP upgrade to WebSocket: the 101 exchange is HTTP, the frames after it go to the WebSocket dissector from the first byte after each message', async () => {
    const capture = 'suricata-verify/basic_websockets.pcap';
    const whole = new Recorder();
    await feedCapture(capture, whole);
    const http: HttpEntry[] = [];
    const ws = new Recorder();
    const router = await route(capture, (r) => ({
      protocols: [{ protocol: HTTP_PROTOCOL, dissector: new HttpDissector((e) => http.push(e), { onUpgrade: (u) => r().upgrade(u) }) }],
      upgrades: { websocket: ws },
    }));
    expect(http).toHaveLength(1);
    expect(http[0]).toMatchObject({ method: 'GET', path: '/service', status_code: 101 });
    expect(http[0]!.error).toBeUndefined();
    expect(ws.opens).toHaveLength(1);
    const [stream, info] = ws.opens[0]!;
    expect(info.upgrade).toMatchObject({ path: '/service', firstIndex: 1 });
    expect(info.upgrade!.responseHeaders.find(([k]) => k.toLowerCase() === 'upgrade')?.[1].toLowerCase()).toBe('websocket');
    // Independent boundary: the end of each side's header block in the raw stream.
    const crlf2 = (a: number[]): number => Buffer.from(a).indexOf('\r\n\r\n') + 4;
    for (const dir of [0, 1]) {
      const all = whole.bytes.get(`${stream}/${dir}`)!;
      const got = ws.bytes.get(`${stream}/${dir}`) ?? [];
      const boundary = crlf2(all);
      expect(got).toEqual(all.slice(boundary));
      if (got.length > 0) expect(ws.offsets.get(`${stream}/${dir}`)).toBe(boundary);
    }
    // The server's first frame rode in the 101's own packet: a text frame with FIN.
    expect(ws.bytes.get(`${stream}/${info.clientDir === 0 ? 1 : 0}`)![0]).toBe(0x81);
    expect(ws.ends.map(([s]) => s)).toEqual([stream, stream]);
    expect(router.stats().claimed).toMatchObject({ http: 1 });
  });
});

describe('decisions', () => {
  /** A protocol answering from a table: bytes starting with its tag are its own. */
  const tagged = (name: string, tag: string, ports: number[] = []): TcpProtocol => ({
    name,
    ports,
    detect: (b): Verdict => {
      const s = Buffer.from(b).toString('latin1');
      if (s.startsWith(tag)) return 'yes';
      return tag.startsWith(s) ? 'more' : 'no';
    },
  });

  function drive(protocols: RoutedProtocol[], ports: [number, number], events: (r: StreamRouter) => void, extra: Partial<ConstructorParameters<typeof StreamRouter>[0]> = {}): StreamRouter {
    const r = new StreamRouter({ protocols, facts: () => ({ clientDir: 0, ports }), ...extra });
    events(r);
    return r;
  }
  const chunk = (dir: TcpDirection, offset: number, s: string): TcpChunk => {
    const buf = Buffer.from(s, 'latin1');
    return { stream: 7, dir, offset, buf, start: 0, length: buf.length, firstSec: 1, firstNsec: offset, lastSec: 1, lastNsec: offset, midStream: false };
  };
  const end = (dir: TcpDirection, offset: number, closed: boolean): TcpEnd => ({ stream: 7, dir, offset, reason: 'fin', sec: 2, nsec: 0, closed });

  test('bytes split one at a time: undecided while a prefix, claimed on the first yes, everything replayed in order', () => {
    const a = new Recorder();
    const b = new Recorder();
    const r = drive(
      [
        { protocol: tagged('a', 'ALPHA'), dissector: a },
        { protocol: tagged('b', 'BRAVO'), dissector: b },
      ],
      [1, 2],
      (r) => {
        const text = 'BRAVO hello';
        for (let i = 0; i < text.length; i++) r.onData(chunk(0, i, text[i]!));
        r.onData(chunk(1, 0, 'reply'));
        r.onEnd(end(0, text.length, false));
        r.onEnd(end(1, 5, true));
      },
    );
    expect(a.opens).toEqual([]);
    expect(b.opens).toEqual([[7, { clientDir: 0 }]]);
    expect(Buffer.from(b.bytes.get('7/0')!).toString()).toBe('BRAVO hello');
    expect(Buffer.from(b.bytes.get('7/1')!).toString()).toBe('reply');
    expect(b.ends).toEqual([
      [7, 0],
      [7, 1],
    ]);
    expect(r.stats()).toEqual({ claimed: { a: 0, b: 1 }, unclaimed: 0, pending: 0, pendingBytes: 0 });
  });

  test('held bytes are copies: the caller may reuse its buffer after each call (a file read into the same buffers)', () => {
    const b = new Recorder();
    const shared = Buffer.alloc(16);
    const send = (r: StreamRouter, offset: number, s: string): void => {
      shared.write(s, 'latin1');
      r.onData({ stream: 7, dir: 0, offset, buf: shared, start: 0, length: s.length, firstSec: 1, firstNsec: offset, lastSec: 1, lastNsec: offset, midStream: false });
      shared.fill(0x2a); // the caller's next read overwrites it
    };
    drive([{ protocol: tagged('b', 'BRAVO'), dissector: b }], [1, 2], (r) => {
      send(r, 0, 'BRA');
      send(r, 3, 'VO hi');
    });
    expect(Buffer.from(b.bytes.get('7/0')!).toString()).toBe('BRAVO hi');
  });

  test('ports order the questions: when two protocols would both claim, the one on its port wins', () => {
    const a = new Recorder();
    const b = new Recorder();
    const protocols = [
      { protocol: tagged('a', 'X'), dissector: a },
      { protocol: tagged('b', 'X', [6379]), dissector: b },
    ];
    drive(protocols, [40000, 6379], (r) => r.onData(chunk(0, 0, 'X')));
    expect(b.opens).toHaveLength(1);
    expect(a.opens).toHaveLength(0);
    // Configured ports count as the protocol's own.
    const a2 = new Recorder();
    const b2 = new Recorder();
    drive(
      [
        { protocol: tagged('b', 'X', [6379]), dissector: b2 },
        { protocol: tagged('a', 'X'), dissector: a2 },
      ],
      [40000, 7000],
      (r) => r.onData(chunk(0, 0, 'X')),
      { portMapping: { a: [7000] } },
    );
    expect(a2.opens).toHaveLength(1);
    expect(b2.opens).toHaveLength(0);
  });

  test('a port alone never claims: content that no protocol recognises stays unclaimed', () => {
    const a = new Recorder();
    const r = drive([{ protocol: tagged('a', 'ALPHA', [80]), dissector: a }], [40000, 80], (r) => {
      r.onData(chunk(0, 0, 'something else'));
      r.onData(chunk(1, 0, 'and more'));
    });
    expect(a.opens).toEqual([]);
    expect(r.stats()).toMatchObject({ unclaimed: 1, pending: 0, pendingBytes: 0 });
  });

  test('the server may speak first: the client direction alone does not decide while the server has not spoken', () => {
    const a = new Recorder();
    // Only server greetings identify this protocol.
    const greeting: TcpProtocol = { name: 'g', ports: [], detect: (b, fromClient) => (fromClient === false && b[0] === 0x0a ? 'yes' : 'no') };
    const r = drive([{ protocol: greeting, dissector: a }], [1, 2], (r) => {
      r.onData(chunk(0, 0, 'login'));
      expect(r.stats().pending).toBe(1);
      r.onData(chunk(1, 0, '\nserver v1'));
    });
    expect(a.opens).toHaveLength(1);
    expect(Buffer.from(a.bytes.get('7/0')!).toString()).toBe('login');
    expect(r.stats().claimed).toEqual({ g: 1 });
  });

  test('memory stays bounded: a direction sending endlessly while the other is silent is left unclaimed at the limit', () => {
    const a = new Recorder();
    const r = drive([{ protocol: { name: 'never', ports: [], detect: () => 'more' }, dissector: a }], [1, 2], (r) => {
      for (let i = 0; i < 1000; i++) r.onData(chunk(0, i * 100, 'x'.repeat(100)));
    }, { maxDetectBytes: 1024 });
    expect(r.stats()).toEqual({ claimed: { never: 0 }, unclaimed: 1, pending: 0, pendingBytes: 0 });
    expect(a.opens).toEqual([]);
  });

  test('a gap ends detection for its direction; held gaps are replayed in their place', () => {
    const a = new Recorder();
    const r = new StreamRouter({ protocols: [{ protocol: tagged('a', 'ALPHA'), dissector: a }], facts: () => ({ clientDir: undefined, ports: [1, 2] }) });
    r.onData(chunk(1, 0, 'ALP'));
    r.onGap({ stream: 7, dir: 0, offset: 0, length: 10, reason: 'acked', sec: 1, nsec: 0 });
    r.onData(chunk(0, 10, 'ALPHA'));
    expect(r.stats().pending).toBe(1);
    r.onData(chunk(1, 3, 'HA'));
    expect(a.opens).toEqual([[7, { clientDir: undefined }]]);
    expect(a.gaps).toEqual([[7, 0, 0, 10]]);
    expect(Buffer.from(a.bytes.get('7/0')!).toString()).toBe('ALPHA');
    expect(Buffer.from(a.bytes.get('7/1')!).toString()).toBe('ALPHA');
  });

  test('a detector that throws counts as no', () => {
    const a = new Recorder();
    const b = new Recorder();
    const r = drive(
      [
        { protocol: { name: 'bad', ports: [], detect: () => { throw new Error('boom'); } }, dissector: a },
        { protocol: tagged('b', 'B'), dissector: b },
      ],
      [1, 2],
      (r) => r.onData(chunk(0, 0, 'B')),
    );
    expect(b.opens).toHaveLength(1);
    expect(r.stats().claimed).toEqual({ bad: 0, b: 1 });
  });

  test('a stream that closes undecided is unclaimed and forgotten; the same id can start again', () => {
    const a = new Recorder();
    const r = drive([{ protocol: tagged('a', 'ALPHA'), dissector: a }], [1, 2], (r) => {
      r.onData(chunk(0, 0, 'AL'));
      r.onEnd(end(0, 2, false));
      r.onEnd(end(1, 0, true));
      r.onData(chunk(0, 0, 'ALPHA'));
    });
    expect(r.stats()).toEqual({ claimed: { a: 1 }, unclaimed: 1, pending: 0, pendingBytes: 0 });
    expect(Buffer.from(a.bytes.get('7/0')!).toString()).toBe('ALPHA');
  });
});

describe('detectors of the built-in protocols', () => {
  test('HTTP: request and status lines yes, partial lines more, others no', () => {
    const d = (s: string): Verdict => HTTP_PROTOCOL.detect(Buffer.from(s, 'latin1'), undefined);
    expect(d('GET / HTTP/1.1\r\n')).toBe('yes');
    expect(d('HTTP/1.0 200 OK\r\n')).toBe('yes');
    expect(d('GET /very/long')).toBe('more');
    expect(d('HTT')).toBe('more');
    expect(d('PRI * HTTP/2.0\r\n')).toBe('no');
    expect(d('\x16\x03\x01\x02\x00')).toBe('no');
    expect(d('*1\r\n$4\r\nPING\r\n')).toBe('no');
    expect(d('GET / HTTP/1.1' + 'x'.repeat(9000))).toBe('no');
  });

  test('DNS over TCP: a plausible header after the length is yes; HTTP, TLS and short input are not', () => {
    const q = Buffer.from('001d12340100000100000000000003777777076578616d706c6503636f6d0000010001', 'hex');
    expect(DNS_TCP_PROTOCOL.detect(q, true)).toBe('yes');
    expect(DNS_TCP_PROTOCOL.detect(q.subarray(0, 10), true)).toBe('more');
    expect(DNS_TCP_PROTOCOL.detect(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), true)).toBe('no');
    expect(DNS_TCP_PROTOCOL.detect(Buffer.from('160301020001000000000000000000', 'hex'), true)).toBe('no');
  });
});

describe('resumed streams', () => {
  test('a stream that ended by idle time goes back to its dissector when it resumes, without detection; after FIN it is detected again', () => {
    const a = new Recorder();
    const only = (tag: string): TcpProtocol => ({ name: 'a', ports: [], detect: (b) => (Buffer.from(b).toString('latin1').startsWith(tag) ? 'yes' : 'no') });
    const r = new StreamRouter({ protocols: [{ protocol: only('REQ'), dissector: a }], facts: () => ({ clientDir: 0, ports: [1, 2] }) });
    const data = (dir: TcpDirection, offset: number, text: string): void => {
      const buf = Buffer.from(text);
      r.onData({ stream: 3, dir, offset, buf, start: 0, length: buf.length, firstSec: 0, firstNsec: 0, lastSec: 0, lastNsec: 0, midStream: offset > 0 });
    };
    const end = (reason: TcpEnd['reason']): void => {
      r.onEnd({ stream: 3, dir: 0, offset: 0, reason, sec: 0, nsec: 0, closed: false });
      r.onEnd({ stream: 3, dir: 1, offset: 0, reason, sec: 0, nsec: 0, closed: true });
    };
    data(0, 0, 'REQ 1');
    end('idle');
    // Resumes with a response only: nothing a detector would recognise.
    data(1, 100, 'response bytes');
    expect(a.opens).toHaveLength(2);
    expect(Buffer.from(a.bytes.get('3/1')!).toString()).toBe('response bytes');
    end('fin');
    data(1, 0, 'response bytes again');
    expect(a.opens).toHaveLength(2);
    // Detected afresh: a response alone is not enough, so it waits for the other direction.
    expect(r.stats()).toMatchObject({ claimed: { a: 2 }, unclaimed: 0, pending: 1 });
  });
});
