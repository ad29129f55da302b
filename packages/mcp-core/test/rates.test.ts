import { flowGroupView, flowView, MIN_RATE_SECONDS } from '../src/model';
import { ipPairGroup, udpFlow } from './memory-source';

/** Rates are given over spans of more than 5 ms (Wireshark's Conversations table leaves shorter ones empty). */

const spanning = (us: number) => ({ ...udpFlow, server_to_client: { packets: 1, bytes: 120, payload_bytes: 78 }, last_seen_us: udpFlow.first_seen_us + us });

test('a flow of 5 ms or less has packets and bytes but no rates; a longer one has both, per direction and in total', () => {
  expect(MIN_RATE_SECONDS).toBe(0.005);
  for (const us of [0, 500, 5000]) {
    const v = flowView(spanning(us));
    expect(v.client_to_server).toEqual({ packets: 1, bytes: 80, payload_bytes: 38 });
    expect(v.server_to_client).toEqual({ packets: 1, bytes: 120, payload_bytes: 78 });
    expect(v.totals).toEqual({ packets: 2, bytes: 200 });
    expect(v.duration_ms).toBe(us / 1000);
  }
  const v = flowView(spanning(5001));
  // 1 packet of 80 bytes in 5.001 ms: 199.96 packets/s, 127,974.41 bits/s (rounded to hundredths).
  expect(v.client_to_server).toEqual({ packets: 1, bytes: 80, payload_bytes: 38, pps: 199.96, bps: 127974.41 });
  expect(v.server_to_client).toEqual({ packets: 1, bytes: 120, payload_bytes: 78, pps: 199.96, bps: 191961.61 });
  expect(v.totals).toEqual({ packets: 2, bytes: 200, pps: 399.92, bps: 319936.01 });
});

test('groups follow the same rule over their first to last seen', () => {
  const long = flowGroupView(ipPairGroup);
  expect(long.totals.pps).toBeGreaterThan(0);
  const short = flowGroupView({ ...ipPairGroup, last_seen_us: ipPairGroup.first_seen_us + 4000 });
  for (const d of [short.client_to_server, short.server_to_client, short.totals]) {
    expect(d.pps).toBeUndefined();
    expect(d.bps).toBeUndefined();
  }
});
