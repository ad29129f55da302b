import { DECODE_REASONS, IPPROTO_TCP, IPPROTO_UDP, IP_FRAGMENT_REASON, LinkType, decodePacket, describeFragment, newL4Packet, type DecodeReason, type L4Packet } from './decode';
import { IpDefragmenter, type DefragOptions, type DefragStats } from './defrag';
import { FlowTable, type FlowTableOptions } from './flows';
import type { RawPacket } from './reader';
import { TcpReassembler, packetSide, type TcpReassemblerOptions, type TcpStreamConsumer } from './reassembly';

/** A UDP datagram as tracked: its flow index, the decoded headers and the packet (valid only during the call). */
export type UdpDatagramHook = (flow: number, d: L4Packet, p: RawPacket) => void;

export interface DecodeCount {
  reason: DecodeReason;
  count: number;
}

/** IP fragment reassembly, as the tracker runs it. */
export interface TrackerDefragStats extends DefragStats {
  /** Reassembled datagrams whose TCP or UDP header was accounted in a flow. */
  tracked: number;
  /** Reassembled datagrams not tracked, by what decoding them gave (ICMP is `other-transport`). */
  untracked: DecodeCount[];
}

/** Counters of what the tracker saw; the numbers a status page shows. */
export interface TrackerStats {
  packets: number;
  /** Packets decoded whole (fragments are not: see `defrag.tracked`). */
  decoded: number;
  /** Traffic that is not tracked (ARP, ICMP), and IP fragments (`ip-fragment`), by reason. */
  skipped: DecodeCount[];
  /** Malformed or unsupported headers, by reason. */
  errors: DecodeCount[];
  /** Oldest and newest packet timestamps, in microseconds since the epoch (0 when none). */
  oldestUs: number;
  newestUs: number;
  /** Fragments, reassembled datagrams and what reassembly discarded. */
  defrag: TrackerDefragStats;
  /** Flows in memory, and flows dropped by the age and count limits. */
  flows: number;
  flowsEvicted: number;
}

export interface FlowTrackerOptions extends FlowTableOptions {
  /** Bounds of IP fragment reassembly. */
  defrag?: DefragOptions;
  /**
   * Flows kept in memory (default: no limit). Beyond it, plus 1/8 slack so the pass over the
   * table runs rarely, the least recently seen flows are dropped. About 470 bytes per flow.
   */
  maxFlows?: number;
  /** Flows not seen for this many seconds of capture time are dropped (default: never). */
  flowMaxAgeSec?: number;
  /**
   * L7 input: every tracked TCP segment (reassembled IP fragments included) goes through a
   * `TcpReassembler` (stream id = flow index) to this consumer. Without it nothing is reassembled
   * and the packet path costs what it did.
   */
  tcpConsumer?: TcpStreamConsumer;
  /** Options of that reassembler. */
  reassembly?: TcpReassemblerOptions;
  /** Called for every tracked UDP datagram, after it was accounted in its flow. */
  onUdp?: UdpDatagramHook;
}

/**
 * Decodes packets and accounts them in a flow table. Bad packets are counted per reason, never
 * thrown. One instance per capture pipeline; `onPacket` is the hot path.
 *
 * IP fragments are reassembled. A reassembled datagram is accounted as tshark counts it: as
 * one packet of the frame whose fragment completed it (that frame's length and timestamp),
 * with the payload of the whole datagram; the other fragments count in no flow.
 */
export class FlowTracker {
  readonly flows: FlowTable;
  readonly defrag: IpDefragmenter;
  private readonly l4: L4Packet = newL4Packet();
  private readonly reasonCounts = new Float64Array(DECODE_REASONS.length);
  private readonly reassembledCounts = new Float64Array(DECODE_REASONS.length);
  /** Reused to present a reassembled datagram to the decoder and the flow table. */
  private readonly reassembled: RawPacket = { buf: Buffer.alloc(0), offset: 0, capLen: 0, origLen: 0, tsSec: 0, tsNsec: 0, linkType: LinkType.RAW, interfaceId: 0, frame: 0 };
  private packets = 0;
  private oldestSec = Infinity;
  private oldestNsec = 0;
  private newestSec = -1;
  private newestNsec = 0;

  private readonly maxFlows: number;
  private readonly evictAt: number;
  private readonly maxAgeSec: number;
  /** TCP reassembly feeding `tcpConsumer` (null without one). */
  readonly reassembler: TcpReassembler | null;
  private readonly udpHook: UdpDatagramHook | null;
  /** Either hook is set: the only test the packet path pays without them. */
  private readonly l7: boolean;

  constructor(options: FlowTrackerOptions = {}) {
    this.flows = new FlowTable(options);
    this.maxFlows = options.maxFlows ?? Infinity;
    this.evictAt = this.maxFlows + Math.max(1024, Math.floor(this.maxFlows / 8));
    this.maxAgeSec = options.flowMaxAgeSec ?? 0;
    this.defrag = new IpDefragmenter(options.defrag);
    this.reassembler = options.tcpConsumer ? new TcpReassembler(options.tcpConsumer, options.reassembly) : null;
    this.udpHook = options.onUdp ?? null;
    this.l7 = this.reassembler !== null || this.udpHook !== null;
    // Bound once so the method can be passed around as a packet callback.
    this.onPacket = this.onPacket.bind(this);
  }

  /** Accounts one packet; returns its flow index, or -1 when it carried no tracked L4 header. */
  onPacket(p: RawPacket): number {
    this.packets++;
    if (this.flows.size > this.evictAt || (this.maxAgeSec > 0 && (this.packets & 0xffff) === 0)) this.enforceLimits();
    const sec = p.tsSec;
    const nsec = p.tsNsec;
    if (sec < this.oldestSec || (sec === this.oldestSec && nsec < this.oldestNsec)) {
      this.oldestSec = sec;
      this.oldestNsec = nsec;
    }
    if (sec > this.newestSec || (sec === this.newestSec && nsec > this.newestNsec)) {
      this.newestSec = sec;
      this.newestNsec = nsec;
    }
    const reason = decodePacket(p, this.l4);
    this.reasonCounts[reason]! += 1;
    if (reason !== 0) return reason === IP_FRAGMENT_REASON ? this.onFragment(p) : -1;
    if (this.l7) return this.dispatch(this.flows.add(p, this.l4), p);
    return this.flows.add(p, this.l4);
  }

  /** Hands a tracked packet to the L7 hooks; returns its flow index. */
  private dispatch(flow: number, p: RawPacket): number {
    if (flow < 0) return flow;
    const d = this.l4;
    if (d.protocol === IPPROTO_TCP) this.reassembler?.segmentFromPacket(flow, packetSide(p, d), p, d);
    else if (d.protocol === IPPROTO_UDP && this.udpHook !== null) this.udpHook(flow, d, p);
    return flow;
  }

  /** End of input: ends every TCP stream (the consumer sees \`flush\` ends). */
  flushStreams(): void {
    this.reassembler?.flush();
  }

  /** Advances the reassembler's capture clock to \`sec\`/\`nsec\` (live capture: the wall clock), ending idle streams. */
  expireStreams(sec: number, nsec: number): void {
    this.reassembler?.expireIdle(sec, nsec);
  }

  /** Drops flows beyond the age and count limits (a pass over the table: runs rarely). */
  enforceLimits(): number {
    const olderThan = this.maxAgeSec > 0 && this.newestSec >= 0 ? this.newestSec - this.maxAgeSec : -Infinity;
    return this.flows.evict(olderThan, this.maxFlows);
  }

  /** Feeds a fragment to reassembly and, when it completes a datagram, accounts the datagram. */
  private onFragment(p: RawPacket): number {
    describeFragment(p.buf, this.l4);
    const datagram = this.defrag.add(p.buf, this.l4, p.tsSec, p.tsNsec);
    if (datagram === undefined) return -1;
    const r = this.reassembled;
    r.buf = datagram;
    r.capLen = datagram.length;
    r.origLen = p.origLen;
    r.tsSec = p.tsSec;
    r.tsNsec = p.tsNsec;
    r.interfaceId = p.interfaceId;
    r.frame = p.frame;
    const reason = decodePacket(r, this.l4);
    this.reassembledCounts[reason]! += 1;
    // A fragment inside a reassembled datagram is not reassembled again.
    if (reason !== 0) return -1;
    if (this.l7) return this.dispatch(this.flows.add(r, this.l4), r);
    return this.flows.add(r, this.l4);
  }

  /** Counters so far. Reassembly timeouts are applied up to the newest timestamp seen first. */
  stats(): TrackerStats {
    const skipped: DecodeCount[] = [];
    const errors: DecodeCount[] = [];
    const untracked: DecodeCount[] = [];
    DECODE_REASONS.forEach((r, i) => {
      const count = this.reasonCounts[i]!;
      const reassembled = this.reassembledCounts[i]!;
      if (r.kind !== 'ok' && reassembled > 0) untracked.push({ reason: r.name, count: reassembled });
      if (count === 0 || r.kind === 'ok') return;
      (r.kind === 'skip' ? skipped : errors).push({ reason: r.name, count });
    });
    const none = this.newestSec < 0;
    if (!none) this.defrag.expire(this.newestSec, this.newestNsec);
    return {
      packets: this.packets,
      decoded: this.reasonCounts[0]!,
      skipped,
      errors,
      oldestUs: none ? 0 : this.oldestSec * 1e6 + Math.floor(this.oldestNsec / 1000),
      newestUs: none ? 0 : this.newestSec * 1e6 + Math.floor(this.newestNsec / 1000),
      defrag: { ...this.defrag.stats(), tracked: this.reassembledCounts[0]!, untracked },
      flows: this.flows.size,
      flowsEvicted: this.flows.evicted,
    };
  }
}
