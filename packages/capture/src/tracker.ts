import { DECODE_REASONS, decodePacket, newL4Packet, type DecodeReason, type L4Packet } from './decode';
import { FlowTable, type FlowTableOptions } from './flows';
import type { RawPacket } from './reader';

export interface DecodeCount {
  reason: DecodeReason;
  count: number;
}

/** Counters of what the tracker saw; the numbers a status page shows. */
export interface TrackerStats {
  packets: number;
  decoded: number;
  /** Traffic that is not tracked (ARP, ICMP, fragments), by reason. */
  skipped: DecodeCount[];
  /** Malformed or unsupported headers, by reason. */
  errors: DecodeCount[];
  /** Oldest and newest packet timestamps, in microseconds since the epoch (0 when none). */
  oldestUs: number;
  newestUs: number;
}

/**
 * Decodes packets and accounts them in a flow table. Bad packets are counted per reason, never
 * thrown. One instance per capture pipeline; `onPacket` is the hot path.
 */
export class FlowTracker {
  readonly flows: FlowTable;
  private readonly l4: L4Packet = newL4Packet();
  private readonly reasonCounts = new Float64Array(DECODE_REASONS.length);
  private packets = 0;
  private oldestSec = Infinity;
  private oldestNsec = 0;
  private newestSec = -1;
  private newestNsec = 0;

  constructor(options: FlowTableOptions = {}) {
    this.flows = new FlowTable(options);
    // Bound once so the method can be passed around as a packet callback.
    this.onPacket = this.onPacket.bind(this);
  }

  /** Accounts one packet; returns its flow index, or -1 when it carried no tracked L4 header. */
  onPacket(p: RawPacket): number {
    this.packets++;
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
    if (reason !== 0) return -1;
    return this.flows.add(p, this.l4);
  }

  stats(): TrackerStats {
    const skipped: DecodeCount[] = [];
    const errors: DecodeCount[] = [];
    DECODE_REASONS.forEach((r, i) => {
      const count = this.reasonCounts[i]!;
      if (count === 0 || r.kind === 'ok') return;
      (r.kind === 'skip' ? skipped : errors).push({ reason: r.name, count });
    });
    const none = this.newestSec < 0;
    return {
      packets: this.packets,
      decoded: this.reasonCounts[0]!,
      skipped,
      errors,
      oldestUs: none ? 0 : this.oldestSec * 1e6 + Math.floor(this.oldestNsec / 1000),
      newestUs: none ? 0 : this.newestSec * 1e6 + Math.floor(this.newestNsec / 1000),
    };
  }
}
