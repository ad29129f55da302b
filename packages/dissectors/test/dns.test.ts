import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  FlowTable,
  IPPROTO_UDP,
  IP_FRAGMENT_REASON,
  IpDefragmenter,
  LinkType,
  TcpReassembler,
  decodePacket,
  describeFragment,
  newL4Packet,
  packetSide,
  readCaptureFile,
  type RawPacket,
  type TcpChunk,
  type TcpDirection,
} from '@kubeshark-mcp/capture';
import { GOLDEN_DIR, capturePath } from '@kubeshark-mcp/testkit';
import { DNS_MALFORMED_REASONS, DnsDissector, parseDnsMessage, type DnsDissectorOptions, type DnsEntry, type DnsMessage } from '../src';
import { DNS_CAPTURES } from './support/captures';

// ---------------------------------------------------------------------------------------------
// The pipeline a worker runs, reduced to what DNS needs

interface Run {
  entries: DnsEntry[];
  dns: DnsDissector;
  /** Frame numbers by capture time ("sec.nsec"). */
  frames: Map<string, number[]>;
}

/**
 * Reads a capture through decodePacket, IP fragment reassembly, the flow table and (for TCP) the
 * reassembler, and feeds port-53 traffic to the dissector. Fragments are reassembled with
 * IpDefragmenter directly, as FlowTracker does internally: FlowTracker does not hand out the
 * reassembled datagram's decoded headers, which the dissector needs.
 */
async function run(capture: string, options: DnsDissectorOptions = {}): Promise<Run> {
  const entries: DnsEntry[] = [];
  const dns = new DnsDissector((e) => entries.push(e), options);
  const tcp = new TcpReassembler(dns);
  const table = new FlowTable();
  const defrag = new IpDefragmenter();
  const l4 = newL4Packet();
  const frames = new Map<string, number[]>();
  await readCaptureFile(capturePath(capture), (p) => {
    const key = `${p.tsSec}.${p.tsNsec}`;
    frames.set(key, [...(frames.get(key) ?? []), p.frame]);
    let pkt: RawPacket = p;
    let reason = decodePacket(p, l4);
    if (reason === IP_FRAGMENT_REASON) {
      describeFragment(p.buf, l4);
      const datagram = defrag.add(p.buf, l4, p.tsSec, p.tsNsec);
      if (datagram === undefined) return;
      pkt = { ...p, buf: datagram, offset: 0, capLen: datagram.length, linkType: LinkType.RAW };
      reason = decodePacket(pkt, l4);
    }
    if (reason !== 0) return;
    const flow = table.add(pkt, l4);
    if (l4.srcPort !== 53 && l4.dstPort !== 53) return;
    if (l4.protocol === IPPROTO_UDP) dns.onUdp(pkt, l4, flow);
    else tcp.segmentFromPacket(flow, packetSide(pkt, l4), pkt, l4);
  });
  tcp.flush();
  dns.flush();
  return { entries, dns, frames };
}

// ---------------------------------------------------------------------------------------------
// tshark's view (fixtures/golden/<capture>/dns.psv)

/** One DNS message as tshark shows it, with what this test compares. */
interface Msg {
  frame: number;
  id: number;
  response: boolean;
  names: string[];
  types: number[];
  rcode?: number;
  a: string[];
  aaaa: string[];
  cname: string[];
  ttl: number[];
  /** dns.response_to and dns.time in whole microseconds (responses tshark paired). */
  responseTo?: number;
  elapsedUs?: number;
}

const list = (s: string): string[] => (s === '' ? [] : s.split(','));

/** "0.065260000" -> 65260 (µs, rounded from the nanoseconds tshark prints). */
function secondsToUs(s: string): number {
  const [whole, frac = ''] = s.split('.');
  return Math.round((Number(whole) * 1e9 + Number(frac.padEnd(9, '0').slice(0, 9))) / 1000);
}

function golden(capture: string): Msg[] {
  const lines = readFileSync(path.join(GOLDEN_DIR, capture, 'dns.psv'), 'utf8').split('\n').filter((l) => l.trim() !== '');
  const header = lines[0]!.split('|');
  const out: Msg[] = [];
  for (const line of lines.slice(1)) {
    const cells = line.split('|');
    const f = (name: string): string => cells[header.indexOf(name)] ?? '';
    const frame = Number(f('frame.number'));
    const ids = list(f('dns.id'));
    if (ids.length > 1) {
      // Several messages in one frame (DNS over TCP): tshark joins each field over them. The
      // captures used here carry one question and no answers per such message.
      const responses = list(f('dns.flags.response'));
      const names = list(f('dns.qry.name'));
      const types = list(f('dns.qry.type'));
      const rcodes = list(f('dns.flags.rcode'));
      expect(names).toHaveLength(ids.length);
      expect(f('dns.a') + f('dns.aaaa') + f('dns.cname') + f('dns.resp.ttl') + f('dns.response_to')).toBe('');
      ids.forEach((id, i) => {
        const rcode = rcodes[i];
        out.push({ frame, id: parseInt(id, 16), response: responses[i] === '1', names: [names[i]!], types: [Number(types[i])], ...(rcode !== undefined ? { rcode: Number(rcode) } : {}), a: [], aaaa: [], cname: [], ttl: [] });
      });
      continue;
    }
    const response = f('dns.flags.response') === '1';
    out.push({
      frame,
      id: parseInt(ids[0]!, 16),
      response,
      names: list(f('dns.qry.name')),
      types: list(f('dns.qry.type')).map(Number),
      ...(response ? { rcode: Number(f('dns.flags.rcode')) } : {}),
      a: list(f('dns.a')),
      aaaa: list(f('dns.aaaa')),
      cname: list(f('dns.cname')),
      ttl: list(f('dns.resp.ttl')).map(Number),
      ...(f('dns.response_to') !== '' ? { responseTo: Number(f('dns.response_to')), elapsedUs: secondsToUs(f('dns.time')) } : {}),
    });
  }
  return out;
}

/** Our entries as per-message records in tshark's shape. */
function ours(r: Run): Msg[] {
  const frameOf = (m: DnsMessage): number => {
    const candidates = r.frames.get(`${m.sec}.${m.nsec}`) ?? [];
    // The captures used here have one frame per timestamp; a tie would make the mapping ambiguous.
    expect(candidates).toHaveLength(1);
    return candidates[0]!;
  };
  const shape = (m: DnsMessage): Msg => {
    // tshark's dns.a, dns.aaaa, dns.cname and dns.resp.ttl span all three record sections; the
    // OPT pseudo-record's "TTL" is the EDNS flags word, which tshark does not show as a TTL.
    const rrs = [...m.answers, ...m.authorities, ...m.additionals];
    return {
      frame: frameOf(m),
      id: m.id,
      response: m.response,
      names: m.questions.map((q) => q.name),
      types: m.questions.map((q) => q.type),
      ...(m.response ? { rcode: m.rcode } : {}),
      a: rrs.flatMap((rr) => (rr.data.kind === 'A' ? [rr.data.address] : [])),
      aaaa: rrs.flatMap((rr) => (rr.data.kind === 'AAAA' ? [rr.data.address] : [])),
      cname: rrs.flatMap((rr) => (rr.data.kind === 'CNAME' ? [rr.data.target] : [])),
      ttl: rrs.filter((rr) => rr.type !== 41).map((rr) => rr.ttl),
    };
  };
  const out: Msg[] = [];
  for (const e of r.entries) {
    if (e.dns_request) out.push(shape(e.dns_request));
    if (e.dns_response) {
      const m = shape(e.dns_response);
      if (e.dns_request) {
        m.responseTo = frameOf(e.dns_request);
        m.elapsedUs = e.elapsed_time;
      }
      out.push(m);
    }
  }
  return out.sort((x, y) => x.frame - y.frame || x.id - y.id || Number(x.response) - Number(y.response));
}

const CAPTURES = DNS_CAPTURES;

describe('DNS against tshark', () => {
  // pairWith 'latest' is tshark's rule (dns.response_to points at the most recent query with the
  // id): every field, every pairing and every latency must then match exactly.
  it.each(CAPTURES)('%s: messages, answers, pairing and latency equal tshark (pairWith latest)', async (capture) => {
    const r = await run(capture, { pairWith: 'latest' });
    expect(ours(r)).toEqual(golden(capture));
    const stats = r.dns.stats();
    expect(DNS_MALFORMED_REASONS.filter((k) => stats.malformed[k] > 0)).toEqual([]);
    // Every query tshark left unanswered is a pair-not-found entry, and nothing else is.
    const g = golden(capture);
    const answered = new Set(g.flatMap((m) => (m.responseTo !== undefined ? [`${m.responseTo}/${m.id}`] : [])));
    const unansweredQueries = g.filter((m) => !m.response && !answered.has(`${m.frame}/${m.id}`)).length;
    const unmatchedResponses = g.filter((m) => m.response && m.responseTo === undefined).length;
    expect(r.entries.filter((e) => e.error === 'pair-not-found' && e.dns_request !== null)).toHaveLength(unansweredQueries);
    expect(r.entries.filter((e) => e.error === 'pair-not-found' && e.dns_request === null)).toHaveLength(unmatchedResponses);
    expect(r.entries.every((e) => e.error !== 'dissection')).toBe(true);
  });

  // The default pairs a response with the earliest waiting query: the latency is what the client
  // waited since its first attempt. tshark pairs with the latest; the captures differ only where
  // a query was retransmitted with the same id on the same flow.
  const DEVIATIONS: Record<string, Record<number, { responseTo: number; elapsedUs: number }>> = {
    // Query frame 3 retransmitted as frame 5 (5.0008 s later, same id 0x9f91, same port); the
    // response (frame 8) answers frame 3 for us: 676270 - 592245 µs plus the 5 s between them.
    'zeek/ipv6-fragmented-dns.pcap': { 8: { responseTo: 3, elapsedUs: 5_084_025 } },
  };
  it.each(CAPTURES)('%s: default pairing (earliest) equals tshark except where documented', async (capture) => {
    const r = await run(capture);
    const expected = golden(capture).map((m) => ({ ...m, ...(DEVIATIONS[capture]?.[m.frame] ?? {}) }));
    expect(ours(r)).toEqual(expected);
  });

  it('ipv6-fragmented-dns: the retransmitted query is the unanswered one under the default rule', async () => {
    const r = await run('zeek/ipv6-fragmented-dns.pcap');
    const lone = r.entries.filter((e) => e.error === 'pair-not-found');
    expect(lone).toHaveLength(1);
    expect(r.frames.get(`${lone[0]!.dns_request!.sec}.${lone[0]!.dns_request!.nsec}`)).toEqual([5]);
    // The TXT answers of these responses only exist in the reassembled IPv6 datagrams.
    const paired = r.entries.filter((e) => e.error === undefined);
    expect(paired.map((e) => e.dns_answers.map((a) => a.data.kind))).toEqual([['TXT'], ['TXT']]);
    expect(paired[1]!.dns_answers[0]!.data.kind === 'TXT' && paired[1]!.dns_answers[0]!.data.strings.join('').length).toBeGreaterThan(3000);
  });

  it('dns-tcp-multirequest-buffer: twenty queries in one segment, each paired over TCP', async () => {
    const r = await run('suricata-verify/dns-tcp-multirequest-buffer.pcap');
    expect(r.entries).toHaveLength(20);
    expect(r.entries.every((e) => e.transport === 'tcp' && e.error === undefined && e.status_code === 3 && e.dns_rcode === 3 && e.failure === 'NXDOMAIN')).toBe(true);
    expect(r.entries.map((e) => e.index)).toEqual([...Array(20).keys()]);
    expect(r.entries[0]!).toMatchObject({ protocol: 'dns', method: 'QUERY', path: '0.google.com', dns_id: 0, elapsed_time: 118_018 });
    expect(r.entries[0]!.dns_authorities.map((a) => a.data.kind)).toEqual(['SOA']);
  });

  it('entries carry the Entry fields', async () => {
    const r = await run('suricata-verify/dns-udp-google.com-a-aaaa-mx.pcap');
    const mx = r.entries[2]!;
    expect(mx).toMatchObject({
      protocol: 'dns',
      transport: 'udp',
      // Each query comes from a new source port: a flow of its own.
      index: 0,
      timestamp: 1494364064147422,
      elapsed_time: 63555,
      method: 'QUERY',
      path: 'google.com',
      status_code: 0,
      dns_rcode: 0,
      dns_questions: [{ name: 'google.com', type: 15, class: 1 }],
    });
    expect(mx.dns_answers.map((a) => a.data)).toContainEqual({ kind: 'MX', preference: 10, exchange: 'aspmx.l.google.com' });
    expect(mx.request!.headers).toEqual([
      ['id', '0x5616'],
      ['flags', '0x0120'], // RD and AD, as dig sends
      ['opcode', 'QUERY'],
    ]);
    expect(mx.response!.body!.length).toBe(mx.response!.body_size);
    expect(mx.error).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// Synthetic messages

/** Builds DNS messages by hand; names are written uncompressed unless given as raw bytes. */
function encodeName(name: string): number[] {
  if (name === '.') return [0];
  return [...name.split('.').flatMap((l) => [l.length, ...Buffer.from(l, 'latin1')]), 0];
}
const u16 = (v: number): number[] => [v >> 8, v & 0xff];
const u32 = (v: number): number[] => [...u16(v >>> 16), ...u16(v & 0xffff)];

function header(id: number, flags: number, qd: number, an: number, ns = 0, ar = 0): number[] {
  return [...u16(id), ...u16(flags), ...u16(qd), ...u16(an), ...u16(ns), ...u16(ar)];
}
function question(name: string | number[], type: number): number[] {
  return [...(typeof name === 'string' ? encodeName(name) : name), ...u16(type), ...u16(1)];
}
function rr(name: number[], type: number, ttl: number, data: number[]): number[] {
  return [...name, ...u16(type), ...u16(1), ...u32(ttl), ...u16(data.length), ...data];
}
const query = (id: number, name: string, type = 1): Buffer => Buffer.from([...header(id, 0x0100, 1, 0), ...question(name, type)]);
const answer = (id: number, name: string, ip: number[], rcode = 0): Buffer =>
  Buffer.from([...header(id, 0x8180 | rcode, 1, 1), ...question(name, 1), ...rr([0xc0, 12], 1, 300, ip)]);

function collect(options: DnsDissectorOptions = {}): { dns: DnsDissector; entries: DnsEntry[] } {
  const entries: DnsEntry[] = [];
  return { dns: new DnsDissector((e) => entries.push(e), options), entries };
}

describe('parseDnsMessage', () => {
  it('decodes every supported record type, with compression pointers', () => {
    const ptr = [0xc0, 12]; // the question name
    const msg = Buffer.from([
      ...header(0x1234, 0x8580, 1, 9, 1, 1),
      ...question('example.com', 255),
      ...rr(ptr, 1, 60, [192, 0, 2, 1]),
      ...rr(ptr, 28, 61, [0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 1]),
      ...rr(ptr, 5, 62, [3, ...Buffer.from('www'), 0xc0, 12]),
      ...rr(ptr, 15, 63, [...u16(10), 4, ...Buffer.from('mail'), 0xc0, 12]),
      ...rr(ptr, 16, 64, [5, ...Buffer.from('hello'), 0, 3, ...Buffer.from('a b')]),
      ...rr(ptr, 33, 65, [...u16(1), ...u16(2), ...u16(5060), 3, ...Buffer.from('sip'), 0xc0, 12]),
      ...rr(ptr, 12, 66, encodeName('host.example.net')),
      ...rr(ptr, 2, 67, [2, ...Buffer.from('ns'), 0xc0, 12]),
      ...rr(ptr, 13, 68, [1, 0x41, 1, 0x42]), // HINFO: not decoded, kept as type + length
      ...rr(ptr, 6, 69, [2, ...Buffer.from('ns'), 0xc0, 12, 10, ...Buffer.from('hostmaster'), 0xc0, 12, ...u32(2024010101), ...u32(7200), ...u32(3600), ...u32(1209600), ...u32(300)]),
      ...rr([0], 41, 0x8000, []), // OPT
    ]);
    const m = parseDnsMessage(msg, 0, msg.length)!;
    expect(m).toMatchObject({ id: 0x1234, response: true, opcode: 0, flags: 0x8580, rcode: 0, length: msg.length });
    expect(m.malformed).toBeUndefined();
    expect(m.questions).toEqual([{ name: 'example.com', type: 255, class: 1 }]);
    expect(m.answers.map((a) => a.data)).toEqual([
      { kind: 'A', address: '192.0.2.1' },
      { kind: 'AAAA', address: '2001:db8::1' },
      { kind: 'CNAME', target: 'www.example.com' },
      { kind: 'MX', preference: 10, exchange: 'mail.example.com' },
      { kind: 'TXT', strings: ['hello', '', 'a b'] },
      { kind: 'SRV', priority: 1, weight: 2, port: 5060, target: 'sip.example.com' },
      { kind: 'PTR', target: 'host.example.net' },
      { kind: 'NS', target: 'ns.example.com' },
      { kind: 'other', length: 4 },
    ]);
    expect(m.answers.map((a) => a.ttl)).toEqual([60, 61, 62, 63, 64, 65, 66, 67, 68]);
    expect(m.authorities[0]!.data).toEqual({ kind: 'SOA', mname: 'ns.example.com', rname: 'hostmaster.example.com', serial: 2024010101, refresh: 7200, retry: 3600, expire: 1209600, minimum: 300 });
    expect(m.additionals[0]).toEqual({ name: '.', type: 41, class: 1, ttl: 0x8000, data: { kind: 'other', length: 0 } });
  });

  it('stops pointer loops and forward pointers, and bounds name length', () => {
    const self = Buffer.from([...header(1, 0x0100, 1, 0), 0xc0, 12, ...u16(1), ...u16(1)]);
    expect(parseDnsMessage(self, 0, self.length)).toMatchObject({ malformed: 'bad-pointer', questions: [] });
    // Two names pointing at each other: the second one's pointer goes forward.
    const pair = Buffer.from([...header(1, 0x0100, 2, 0), 1, 0x61, 0xc0, 20, ...u16(1), ...u16(1), 1, 0x62, 0xc0, 12, ...u16(1), ...u16(1)]);
    expect(parseDnsMessage(pair, 0, pair.length)?.malformed).toBe('bad-pointer');
    const long = Buffer.from([...header(1, 0x0100, 1, 0), ...Array(5).fill([63, ...Array(63).fill(0x61)]).flat(), 0, ...u16(1), ...u16(1)]);
    expect(parseDnsMessage(long, 0, long.length)?.malformed).toBe('name-too-long');
    const ext = Buffer.from([...header(1, 0x0100, 1, 0), 0x41, 0, ...u16(1), ...u16(1)]);
    expect(parseDnsMessage(ext, 0, ext.length)?.malformed).toBe('bad-label-type');
  });

  it('escapes unusual label bytes', () => {
    const m = Buffer.from([...header(1, 0x0100, 1, 0), 3, 0x61, 0x2e, 0x00, 2, 0x5c, 0x20, 0, ...u16(1), ...u16(1)]);
    expect(parseDnsMessage(m, 0, m.length)!.questions[0]!.name).toBe('a\\.\\000.\\\\\\032');
  });

  it('keeps what decoded before a truncation, and a bad RDATA spoils only its record', () => {
    const full = answer(7, 'example.com', [10, 0, 0, 1]);
    expect(parseDnsMessage(full, 0, 11)).toBeUndefined();
    expect(parseDnsMessage(full, 0, 20)).toMatchObject({ id: 7, malformed: 'truncated-question', questions: [] });
    expect(parseDnsMessage(full, 0, full.length - 1)).toMatchObject({ malformed: 'truncated-record', answers: [] });
    const bad = Buffer.from([...header(7, 0x8180, 1, 2), ...question('a.b', 1), ...rr([0xc0, 12], 1, 5, [1, 2, 3]), ...rr([0xc0, 12], 1, 6, [1, 2, 3, 4])]);
    const m = parseDnsMessage(bad, 0, bad.length)!;
    expect(m.malformed).toBe('bad-rdata');
    expect(m.answers.map((a) => a.data)).toEqual([
      { kind: 'other', length: 3 },
      { kind: 'A', address: '1.2.3.4' },
    ]);
  });

  it('never throws on any prefix or byte flip of a valid message', () => {
    const base = Buffer.from([...answer(9, 'www.example.com', [1, 2, 3, 4]), ...rr([0xc0, 12], 5, 1, [0xc0, 12])]);
    base[7] = 2; // two answers
    for (let len = 0; len <= base.length; len++) expect(() => parseDnsMessage(base, 0, len)).not.toThrow();
    for (let i = 0; i < base.length; i++) {
      for (const v of [0, 0xff, 0xc0, 0x3f, 12]) {
        const b = Buffer.from(base);
        b[i] = v;
        expect(() => parseDnsMessage(b, 0, b.length)).not.toThrow();
      }
    }
  });
});

describe('DnsDissector pairing', () => {
  it('pairs by id and flow, with latency in microseconds', () => {
    const { dns, entries } = collect();
    const q = query(1, 'a.example');
    dns.onDatagram(q, 0, q.length, 7, 100, 0);
    dns.onDatagram(q, 0, q.length, 8, 100, 500); // same id, other flow
    const a = answer(1, 'a.example', [1, 1, 1, 1]);
    dns.onDatagram(a, 0, a.length, 8, 100, 2_500_999);
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ stream: 8, index: 0, timestamp: 100_000_000, elapsed_time: 2500, path: 'a.example', status_code: 0 });
    expect(entries[0]!.dns_answers[0]!.data).toEqual({ kind: 'A', address: '1.1.1.1' });
    dns.flush();
    expect(entries).toHaveLength(2);
    expect(entries[1]).toMatchObject({ stream: 7, error: 'pair-not-found', elapsed_time: 0, response: null });
    expect('dns_rcode' in entries[1]!).toBe(false);
  });

  it('answers the earliest waiting query by default, the latest on request', () => {
    for (const pairWith of ['earliest', 'latest'] as const) {
      const { dns, entries } = collect({ pairWith });
      const q = query(5, 'x.example');
      dns.onDatagram(q, 0, q.length, 1, 10, 0);
      dns.onDatagram(q, 0, q.length, 1, 11, 0);
      const a = answer(5, 'x.example', [2, 2, 2, 2]);
      dns.onDatagram(a, 0, a.length, 1, 11, 1000);
      dns.flush();
      expect(entries.map((e) => [e.index, e.error ?? 'ok', e.elapsed_time])).toEqual(
        pairWith === 'earliest'
          ? [
              [0, 'ok', 1_000_001],
              [1, 'pair-not-found', 0],
            ]
          : [
              [1, 'ok', 1],
              [0, 'pair-not-found', 0],
            ],
      );
    }
  });

  it('times out unanswered queries in capture time; a late response pairs with nothing', () => {
    const { dns, entries } = collect({ timeoutMs: 2000 });
    const q = query(3, 'slow.example');
    dns.onDatagram(q, 0, q.length, 4, 50, 0);
    dns.advance(52, 0);
    expect(entries).toHaveLength(0);
    dns.advance(52, 1);
    expect(entries.map((e) => e.error)).toEqual(['pair-not-found']);
    const a = answer(3, 'slow.example', [3, 3, 3, 3], 3);
    dns.onDatagram(a, 0, a.length, 4, 53, 0);
    expect(entries[1]).toMatchObject({ error: 'pair-not-found', request: null, status_code: 3, dns_rcode: 3, index: 1, timestamp: 53_000_000 });
    expect(dns.stats()).toMatchObject({ queries: 1, responses: 1, paired: 0, unansweredQueries: 1, unmatchedResponses: 1 });
  });

  it('counts malformed messages per reason and flags the entry', () => {
    const { dns, entries } = collect();
    dns.onDatagram(Buffer.alloc(5), 0, 5, 1, 1, 0);
    const q = query(1, 'a.b');
    dns.onDatagram(q, 0, q.length, 1, 1, 0);
    const a = answer(1, 'a.b', [1, 2, 3, 4]);
    dns.onDatagram(a, 0, a.length - 2, 1, 1, 10_000);
    expect(entries[0]).toMatchObject({ error: 'dissection', elapsed_time: 10 });
    expect(dns.stats().malformed).toMatchObject({ 'truncated-header': 1, 'truncated-record': 1 });
  });
});

describe('DnsDissector over TCP', () => {
  /** Feeds `bytes` as one direction of a stream, cut at the given offsets. */
  function feed(dns: DnsDissector, stream: number, dir: TcpDirection, bytes: Buffer, cuts: number[], sec: number): void {
    let offset = 0;
    for (const end of [...cuts, bytes.length]) {
      if (end <= offset) continue;
      const chunk: TcpChunk = { stream, dir, offset, buf: bytes, start: offset, length: end - offset, firstSec: sec, firstNsec: offset, lastSec: sec, lastNsec: offset, midStream: false };
      dns.onData(chunk);
      offset = end;
    }
  }
  const framed = (...msgs: Buffer[]): Buffer => Buffer.concat(msgs.map((m) => Buffer.concat([Buffer.from(u16(m.length)), m])));

  it('frames several messages per chunk and messages split anywhere, including the length prefix', () => {
    const queries = framed(query(1, 'one.example'), query(2, 'two.example'), query(3, 'three.example'));
    const answers = framed(answer(1, 'one.example', [1, 0, 0, 1]), answer(2, 'two.example', [1, 0, 0, 2]), answer(3, 'three.example', [1, 0, 0, 3]));
    for (let cut = 0; cut <= queries.length; cut++) {
      const { dns, entries } = collect();
      feed(dns, 9, 0, queries, [cut], 1);
      feed(dns, 9, 1, answers, [cut, cut + 1], 2);
      expect(entries.map((e) => [e.transport, e.path, e.dns_answers[0]!.data])).toEqual([
        ['tcp', 'one.example', { kind: 'A', address: '1.0.0.1' }],
        ['tcp', 'two.example', { kind: 'A', address: '1.0.0.2' }],
        ['tcp', 'three.example', { kind: 'A', address: '1.0.0.3' }],
      ]);
      expect(dns.stats().malformed['tcp-truncated']).toBe(0);
    }
    // Byte by byte: a message's time is that of its first byte (here, its offset in nsec).
    const { dns, entries } = collect();
    feed(dns, 9, 0, queries, [...queries.keys()], 1);
    feed(dns, 9, 1, answers, [...answers.keys()], 2);
    expect(entries.map((e) => e.dns_request!.nsec)).toEqual([0, 2 + query(1, 'one.example').length, 4 + query(1, 'one.example').length + query(2, 'two.example').length]);
  });

  it('stops framing a direction after a gap, counts a cut message, and closes waiting queries at the end', () => {
    const { dns, entries } = collect();
    const q = framed(query(1, 'a.example'), query(2, 'b.example'));
    feed(dns, 3, 0, q, [], 1);
    dns.onGap({ stream: 3, dir: 1, offset: 0, length: 10, reason: 'acked', sec: 1, nsec: 5 });
    feed(dns, 3, 1, framed(answer(1, 'a.example', [1, 1, 1, 1])), [], 1);
    expect(entries).toHaveLength(0);
    const partial = framed(query(4, 'c.example')).subarray(0, 7);
    feed(dns, 3, 0, Buffer.concat([Buffer.alloc(0), partial]), [], 2);
    dns.onEnd({ stream: 3, dir: 0, offset: 0, reason: 'fin', sec: 3, nsec: 0, closed: false });
    dns.onEnd({ stream: 3, dir: 1, offset: 0, reason: 'fin', sec: 3, nsec: 0, closed: true });
    expect(entries.map((e) => [e.dns_id, e.error])).toEqual([
      [1, 'pair-not-found'],
      [2, 'pair-not-found'],
    ]);
    expect(dns.stats().malformed).toMatchObject({ 'tcp-gap': 1, 'tcp-truncated': 1 });
  });
});
