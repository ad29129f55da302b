import { decodePacket, FlowTable, IPPROTO_TCP, newL4Packet, packetSide, readCaptureFile, TcpFlag, TcpReassembler, type RawPacket, type TcpDirection } from '@kubeshark-mcp/capture';
import { capturePath, goldenCaptures } from '@kubeshark-mcp/testkit';
import type { Entry, StreamRouter } from '../src';
import { allDissectors } from './support/all-dissectors';
import { prng } from './support/damage';

/**
 * Every real capture, damaged, through every dissector behind the stream router (as the worker
 * runs them). Damage touches only chosen "victim" connections: some of their later packets are
 * dropped (the reassembler reports gaps) and payload bytes are flipped. Checked per capture
 * and seed: nothing throws, nothing hangs (the test's timeout), nothing stays held once the
 * input ends, and every entry of an untouched connection is exactly what the clean run gave.
 * A capture cut short at a random packet must also pass without exceptions.
 */

interface Run {
  entries: Map<number, string[]>;
  pendingBytes: number;
}

const json = (e: Entry): string =>
  JSON.stringify(e, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v));

interface Pipeline {
  router: StreamRouter;
  clientDirs: Map<number, TcpDirection | undefined>;
  entries: Entry[];
  flush: () => void;
}

/** Every TCP dissector behind one router, with the upgrade hand-offs, as the worker wires them. */
function pipeline(): Pipeline {
  const entries: Entry[] = [];
  return { ...allDissectors((e) => entries.push(e)), entries };
}


/** Runs packets through decode -> flow table -> reassembler -> router, damaging the victims' later packets. */
function run(packets: RawPacket[], victims: Set<number>, random: () => number, cutAt = packets.length): Run {
  const { router, clientDirs, flush, entries } = pipeline();
  const reassembler = new TcpReassembler(router);
  const flows = new FlowTable();
  const l4 = newL4Packet();
  const seen = new Set<number>();
  for (let i = 0; i < cutAt; i++) {
    const original = packets[i]!;
    if (decodePacket(original, l4) !== 0) continue;
    const idx = flows.add(original, l4);
    if (l4.protocol !== IPPROTO_TCP) continue;
    let p = original;
    const first = !seen.has(idx);
    if (first) {
      seen.add(idx);
      const syn = (l4.tcpFlags & TcpFlag.SYN) !== 0;
      clientDirs.set(idx, syn ? ((l4.tcpFlags & TcpFlag.ACK) !== 0 ? ((1 - packetSide(p, l4)) as TcpDirection) : packetSide(p, l4)) : undefined);
    } else if (victims.has(idx)) {
      // Never the first packet (flow numbering stays the same); payload only (no new flows).
      if (random() < 0.2) continue;
      const payloadEnd = p.offset + p.capLen;
      if (l4.payloadLen > 0 && random() < 0.5) {
        const buf = Buffer.from(p.buf.subarray(0, payloadEnd));
        const at = l4.payloadOff + Math.floor(random() * Math.max(1, Math.min(l4.payloadLen, payloadEnd - l4.payloadOff)));
        if (at < payloadEnd) buf[at] = buf[at]! ^ (1 + Math.floor(random() * 255));
        p = { ...p, buf };
        if (decodePacket(p, l4) !== 0) continue;
      }
    }
    reassembler.segmentFromPacket(idx, packetSide(p, l4), p, l4);
  }
  reassembler.flush();
  flush();
  const byStream = new Map<number, string[]>();
  for (const e of entries) byStream.set(e.stream, [...(byStream.get(e.stream) ?? []), json(e)]);
  return { entries: byStream, pendingBytes: router.stats().pendingBytes };
}

const CAPTURES = goldenCaptures().filter((c) => !c.startsWith('gopacket/le_test'));

describe.each(CAPTURES)('%s, damaged', (capture) => {
  let packets: RawPacket[];
  let tcpFlows: number[];

  beforeAll(async () => {
    packets = [];
    const result = await readCaptureFile(capturePath(capture), (p) => {
      packets.push({ ...p, buf: Buffer.from(p.buf.subarray(0, p.offset + p.capLen)) });
    });
    expect(result.bytes).toBeGreaterThan(0);
    const flows = new FlowTable();
    const l4 = newL4Packet();
    const tcp = new Set<number>();
    for (const p of packets) if (decodePacket(p, l4) === 0 && l4.protocol === IPPROTO_TCP) tcp.add(flows.add(p, l4));
    tcpFlows = [...tcp];
  });

  test.each([1, 2, 3])('seed %d: no exception, nothing held, untouched connections give the clean entries', (seed) => {
    const clean = run(packets, new Set(), prng(seed));
    const random = prng(seed * 7919);
    const victims = new Set(tcpFlows.filter(() => random() < 0.5));
    // With a single connection, damage it anyway: the no-exception check still means something.
    if (victims.size === 0 && tcpFlows.length > 0) victims.add(tcpFlows[0]!);
    const damaged = run(packets, victims, random);
    expect(damaged.pendingBytes).toBe(0);
    for (const [stream, entries] of clean.entries) {
      if (victims.has(stream)) continue;
      expect({ stream, entries: damaged.entries.get(stream) ?? [] }).toEqual({ stream, entries });
    }
    // Cut short: whatever was in flight is given up without an exception.
    const cut = run(packets, victims, prng(seed), Math.floor(prng(seed + 1)() * packets.length));
    expect(cut.pendingBytes).toBe(0);
  });
});
