import { capturePath, goldenCaptures, loadTcpHealth, TCP_HEALTH_FLAGS, type GoldenTcpHealth, type TcpHealthFlag } from '@kubeshark-mcp/testkit';
import { FlowTracker, LinkType, readCaptureFile, type FlowRecord, type RawPacket } from '../src';

/**
 * TCP health (retransmissions, out-of-order, duplicate ACKs, zero windows, ...) against tshark's
 * expert analysis of the same captures: fixtures/golden/<capture>/tcp_health.csv, written by
 * scripts/golden.sh, counts per tcp.stream and direction the frames carrying each
 * tcp.analysis.* flag. tshark numbers TCP streams in order of their first packet, as the flow
 * table does, so the n-th TCP flow is stream n.
 *
 * Every capture agrees exactly, so there is no list of exceptions. Known limits of the
 * mirroring (none of them occurs in the fixtures): past 10000 unacknowledged segments tshark
 * stops counting a FIN's sequence number; MPTCP's duplicate-ACK tolerance is not modelled; port
 * reuse splits streams as the flow table does (see golden.test.ts).
 */

type Health = NonNullable<FlowRecord['tcpHealth']>['clientToServer'];

const FIELD: Record<TcpHealthFlag, keyof Health> = {
  retransmission: 'retransmissions',
  fast_retransmission: 'fastRetransmissions',
  spurious_retransmission: 'spuriousRetransmissions',
  out_of_order: 'outOfOrder',
  duplicate_ack: 'duplicateAcks',
  zero_window: 'zeroWindows',
  keep_alive: 'keepAlives',
  window_full: 'windowFull',
  lost_segment: 'lostSegments',
  ack_lost_segment: 'ackedUnseenSegments',
};

const endpoint = (e: { ip: string; port: number }): string => `${e.ip}:${e.port}`;

function asGolden(h: Health): Record<TcpHealthFlag, number> {
  const out = {} as Record<TcpHealthFlag, number>;
  for (const flag of TCP_HEALTH_FLAGS) out[flag] = h[FIELD[flag]];
  return out;
}

/** A flow's health as tshark would print it: directions named by which endpoint sent first. */
function asStream(f: FlowRecord, stream: number, golden: GoldenTcpHealth): GoldenTcpHealth {
  const aIsClient = golden.a === endpoint(f.client);
  const h = f.tcpHealth!;
  return {
    stream,
    a: endpoint(aIsClient ? f.client : f.server),
    b: endpoint(aIsClient ? f.server : f.client),
    ab: asGolden(aIsClient ? h.clientToServer : h.serverToClient),
    ba: asGolden(aIsClient ? h.serverToClient : h.clientToServer),
  };
}

const captures = goldenCaptures().filter((c) => loadTcpHealth(c) !== undefined);

/** Captures whose comparison must not be vacuous: each has at least one flag set. */
const MUST_FLAG = [
  'zeek/tcp_retransmit-fast009.pcap',
  'zeek/tcp_retransmit-timeout.pcapng',
  'zeek/tcp_fin_retransmission.pcap',
  'suricata-verify/syn_retransmit_with_ts.pcap',
  'suricata-verify/http-gap-simple.pcap',
  'zeek/http_1000-requests-one-dropped-response.pcap.gz',
];

const total = (rows: GoldenTcpHealth[], flag: TcpHealthFlag): number => rows.reduce((n, r) => n + r.ab[flag] + r.ba[flag], 0);

test('the health goldens cover the retransmission and gap captures, with flags set', () => {
  expect(captures.length).toBeGreaterThanOrEqual(60);
  for (const c of MUST_FLAG) {
    const rows = loadTcpHealth(c);
    expect(rows).toBeDefined();
    expect(TCP_HEALTH_FLAGS.map((f) => total(rows!, f)).some((n) => n > 0)).toBe(true);
  }
  // Across the set, every flag that real traffic in the fixtures carries is exercised.
  const all = captures.flatMap((c) => loadTcpHealth(c)!);
  for (const flag of ['retransmission', 'fast_retransmission', 'spurious_retransmission', 'out_of_order', 'duplicate_ack', 'keep_alive', 'lost_segment', 'ack_lost_segment'] as const) {
    expect(total(all, flag)).toBeGreaterThan(0);
  }
});

describe.each(captures)('%s', (capture) => {
  test('TCP health per stream and direction equals tshark', async () => {
    const golden = loadTcpHealth(capture)!;
    const tracker = new FlowTracker();
    const result = await readCaptureFile(capturePath(capture), tracker.onPacket);
    expect(result.error).toBeUndefined();
    const tcp = [...tracker.flows.all()].filter((f) => f.protocol === 'tcp');
    expect(tcp.map((f, i) => asStream(f, i, golden[i] ?? golden[0]!))).toEqual(golden);
  });
});

/**
 * Crafted conversations for the rules no fixture exercises (zero window, window full with
 * window scaling, sequence-number wrap-around, out-of-order against the handshake RTT) and for
 * the ACKed-unseen bookkeeping. Each line is one IPv4 segment: sender (C = 10.0.0.1:1000,
 * S = 10.0.0.2:80), seq, ack, flags (S, A, F, R, P), payload length, raw window, milliseconds
 * since 1700000000 s, and TCP options in hex. The expected flags per frame are what tshark
 * 4.0.17 reported for the same segments written to a pcap (frame numbers from 1).
 */
interface Scenario {
  name: string;
  /** Seconds of the capture's time origin (tshark treats a SYN at exactly 0 as no SYN). */
  epoch?: number;
  segments: string;
  tshark: Record<number, TcpHealthFlag[]>;
}

const ZERO_WINDOW_AND_WINDOW_FULL = `
  C 100 0 S 0 1000 0 01030302
  S 1000 101 SA 0 1000 10 01030301
  C 101 1001 A 0 250 20
  S 1001 101 A 100 500 30
  C 101 1101 A 0 0 40
  S 1101 101 A 1 500 1040
  C 101 1101 A 0 0 1050
  C 101 1101 A 0 25 2000
  S 1101 101 A 100 500 2010
  C 101 1201 A 0 250 2020
  C 101 1201 A 0 250 2030
  S 1200 101 A 1 500 9000
  C 101 1201 A 0 250 9010
  S 1200 101 A 0 500 12000
  C 101 1201 A 0 250 12010
  C 101 1201 AF 0 250 12020
  S 1201 102 AF 0 500 12030
  C 102 1202 A 0 250 12040`;

const WRAP_AND_REORDERING = `
  C 4294967000 0 S 0 1000 0
  S 5000 4294967001 SA 0 1000 50
  C 4294967001 5001 A 0 1000 100
  C 4294967001 5001 A 100 1000 110
  C 4294967101 5001 A 100 1000 111
  C 4294967201 5001 A 100 1000 112
  C 5 5001 A 100 1000 113
  C 205 5001 A 100 1000 114
  S 5001 105 A 0 1000 150
  S 5001 105 A 0 1000 151
  S 5001 105 A 0 1000 152
  C 105 5001 A 100 1000 160
  C 4294967201 5001 A 100 1000 170
  C 405 5001 A 100 1000 200
  C 305 5001 A 100 1000 250
  C 305 5001 A 100 1000 600
  S 5001 505 A 0 1000 610
  C 505 5001 AF 0 1000 620
  S 5001 506 AF 0 1000 630
  C 506 5002 A 0 1000 640`;

const HANDSHAKE = `
  C 100 0 S 0
  S 1000 101 SA 0
  C 101 1001 A 0`;

const SCENARIOS: Scenario[] = [
  {
    // Zero window (5, and 7 which also acknowledges the probe 6), the probe itself is not a
    // retransmission; 9 fills the 25 << 2 bytes the client opened; 12 and 14 are keep-alives,
    // not retransmissions, and their ACKs (13, 15) are not duplicate ACKs.
    name: 'zero window, zero-window probe, window full with window scaling, keep-alives',
    segments: ZERO_WINDOW_AND_WINDOW_FULL,
    tshark: { 5: ['zero_window'], 7: ['zero_window'], 9: ['window_full'], 11: ['duplicate_ack'], 12: ['keep_alive'], 14: ['keep_alive'] },
  },
  {
    // Data across 2^32 (6 -> 7); 12 answers two duplicate ACKs within 20 ms; 13 resends data
    // already acknowledged; 15 fills a hole 50 ms after the newest segment, inside the 100 ms
    // handshake RTT (out-of-order), 16 resends it 400 ms later (retransmission).
    name: 'sequence wrap-around, fast and spurious retransmission, out-of-order within the handshake RTT',
    segments: WRAP_AND_REORDERING,
    tshark: {
      8: ['lost_segment'],
      10: ['duplicate_ack'],
      11: ['duplicate_ack'],
      12: ['retransmission', 'fast_retransmission'],
      13: ['retransmission', 'spurious_retransmission'],
      14: ['lost_segment'],
      15: ['out_of_order'],
      16: ['retransmission'],
    },
  },
  {
    // The same segments with the SYN at time 0: tshark then knows no handshake RTT and uses its
    // 3 ms default, so 15 is a retransmission.
    name: 'a SYN stamped at the epoch gives no handshake RTT, as in tshark',
    epoch: 0,
    segments: WRAP_AND_REORDERING,
    tshark: {
      8: ['lost_segment'],
      10: ['duplicate_ack'],
      11: ['duplicate_ack'],
      12: ['retransmission', 'fast_retransmission'],
      13: ['retransmission', 'spurious_retransmission'],
      14: ['lost_segment'],
      15: ['retransmission'],
      16: ['retransmission'],
    },
  },
  {
    // The client offers shift 15, which tshark (as RFC 7323) takes as 14; the server's 16384
    // bytes (4) fill the client's window of 1 << 14.
    name: 'window full at the largest window scale',
    segments: `
      C 100 0 S 0 1000 0 0103030f
      S 1000 101 SA 0 1000 10 0103030e
      C 101 1001 A 0 1 20
      S 1001 101 A 16384 2 30
      C 101 17385 A 0 1 40
      S 17385 101 A 16383 2 50`,
    tshark: { 4: ['window_full'] },
  },
  {
    // The server acknowledges 15 client bytes never captured (4); its next segment repeats the
    // ACK and is not reported again, as the client sent nothing since.
    name: 'an ACKed-unseen segment is reported once while the peer is silent',
    segments: `${HANDSHAKE}
      S 1001 116 A 0
      S 1001 116 A 10
      C 101 1011 A 15`,
    tshark: { 4: ['ack_lost_segment'], 6: ['retransmission', 'spurious_retransmission'] },
  },
  {
    // After the hole the server skips ahead again (6); the client's ACK past it is a new report.
    name: 'an ACKed-unseen segment is reported again after a new hole',
    segments: `${HANDSHAKE}
      S 1001 101 A 10
      C 101 1021 A 0
      S 1021 101 A 10
      C 101 1031 A 0`,
    tshark: { 5: ['ack_lost_segment'], 6: ['lost_segment'], 7: ['ack_lost_segment'] },
  },
  {
    // A duplicate ACK from the server (7) does not hide the client's later ACK past a hole.
    name: 'an ACKed-unseen segment after a duplicate ACK',
    segments: `${HANDSHAKE}
      S 1001 101 A 10
      C 101 1021 A 0
      S 1021 101 A 0
      S 1021 101 A 0
      C 101 1031 A 0 2000`,
    tshark: { 5: ['ack_lost_segment'], 6: ['lost_segment'], 7: ['duplicate_ack'], 8: ['ack_lost_segment'] },
  },
  {
    // tshark keeps the duplicate-ACK count unsigned: the -1 an ACKed-unseen segment leaves on
    // the server (5) passes its ">= 2 duplicate ACKs" test, so 7, resending what the server
    // last acknowledged within 20 ms of its last segment, is a fast retransmission; 8, later,
    // is a plain one.
    name: 'after an ACKed-unseen segment a quick resend is a fast retransmission, as in tshark',
    segments: `${HANDSHAKE}
      S 1001 101 A 10 1000 30
      C 101 1021 A 0 1000 32
      C 101 1021 A 10 1000 34
      C 101 1021 A 10 1000 40
      C 101 1021 A 10 1000 100`,
    tshark: { 5: ['ack_lost_segment'], 7: ['retransmission', 'fast_retransmission'], 8: ['retransmission'] },
  },
];

const CLIENT = [10, 0, 0, 1];
const SERVER = [10, 0, 0, 2];

/** Raw-IPv4 frames (LINKTYPE_RAW) for a scenario's segments. */
function packets(s: Scenario): RawPacket[] {
  const epoch = s.epoch ?? 1700000000;
  let ms = 0;
  return s.segments
    .trim()
    .split('\n')
    .map((line, i) => {
      const [dir, seq, ack, flags, len, win = '1000', at, opts = ''] = line.trim().split(/\s+/);
      ms = at === undefined ? ms + 10 : Number(at);
      const options = Buffer.from(opts, 'hex');
      const payload = Number(len);
      const tcpLen = 20 + options.length;
      const buf = Buffer.alloc(20 + tcpLen + payload, 0x78);
      const [src, dst, sport, dport] = dir === 'C' ? [CLIENT, SERVER, 1000, 80] : [SERVER, CLIENT, 80, 1000];
      buf.fill(0, 0, 20 + tcpLen);
      buf[0] = 0x45;
      buf.writeUInt16BE(buf.length, 2);
      buf[8] = 64;
      buf[9] = 6;
      buf.set(src!, 12);
      buf.set(dst!, 16);
      buf.writeUInt16BE(sport as number, 20);
      buf.writeUInt16BE(dport as number, 22);
      buf.writeUInt32BE(Number(seq) >>> 0, 24);
      buf.writeUInt32BE(Number(ack) >>> 0, 28);
      buf[32] = (tcpLen / 4) << 4;
      buf[33] = [...flags!].reduce((f, c) => f | ({ F: 1, S: 2, R: 4, P: 8, A: 16 } as Record<string, number>)[c]!, 0);
      buf.writeUInt16BE(Number(win), 34);
      options.copy(buf, 40);
      return {
        buf,
        offset: 0,
        capLen: buf.length,
        origLen: buf.length,
        tsSec: epoch + Math.floor(ms / 1000),
        tsNsec: (ms % 1000) * 1e6,
        linkType: LinkType.RAW,
        interfaceId: 0,
        frame: i + 1,
      };
    });
}

describe.each(SCENARIOS)('crafted: $name', (scenario) => {
  test('flags per frame equal tshark 4.0.17', () => {
    const tracker = new FlowTracker();
    const seen: Record<number, TcpHealthFlag[]> = {};
    let before = { clientToServer: asGolden(zero()), serverToClient: asGolden(zero()) };
    for (const p of packets(scenario)) {
      const idx = tracker.onPacket(p);
      expect(idx).toBe(0);
      const h = tracker.flows.get(idx).tcpHealth!;
      const after = { clientToServer: asGolden(h.clientToServer), serverToClient: asGolden(h.serverToClient) };
      const sender = p.buf[15] === CLIENT[3] ? 'clientToServer' : 'serverToClient';
      const other = sender === 'clientToServer' ? 'serverToClient' : 'clientToServer';
      // A segment's flags count in its sender's direction only, by one each.
      expect(after[other]).toEqual(before[other]);
      const flags = TCP_HEALTH_FLAGS.filter((f) => after[sender][f] !== before[sender][f]);
      for (const f of flags) expect(after[sender][f] - before[sender][f]).toBe(1);
      if (flags.length > 0) seen[p.frame] = flags;
      before = after;
    }
    const sorted = (m: Record<number, TcpHealthFlag[]>): Record<number, TcpHealthFlag[]> => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, [...v].sort()]));
    expect(sorted(seen)).toEqual(sorted(scenario.tshark));
  });
});

function zero(): Health {
  return {
    retransmissions: 0,
    fastRetransmissions: 0,
    spuriousRetransmissions: 0,
    outOfOrder: 0,
    duplicateAcks: 0,
    zeroWindows: 0,
    keepAlives: 0,
    windowFull: 0,
    lostSegments: 0,
    ackedUnseenSegments: 0,
  };
}
