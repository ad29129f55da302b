import { readFileSync } from 'node:fs';
import { CaptureReader, pcapngSectionHeader } from '@kubeshark-mcp/capture';
import { capturePath } from '@kubeshark-mcp/testkit';
import { PcapMerger } from '../src/pcap-merge';

/** The k-way PCAP merge on fixture captures fed in uneven chunks. */

interface Pkt {
  t: bigint;
  len: number;
  iface: number;
  linkType: number;
}

function read(file: Buffer): Pkt[] {
  const out: Pkt[] = [];
  const r = new CaptureReader((p) => out.push({ t: BigInt(p.tsSec) * 1_000_000_000n + BigInt(p.tsNsec), len: p.origLen, iface: p.interfaceId, linkType: p.linkType }));
  r.push(file);
  r.end();
  return out;
}

/** Feeds `input` to the merger in chunks of varying sizes. */
function feed(m: PcapMerger, i: number, input: Buffer, seed: number): void {
  let at = 0;
  let x = seed;
  while (at < input.length) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const n = 1 + (x % 3000);
    m.push(i, input.subarray(at, at + n));
    at += n;
  }
}

const A = readFileSync(capturePath('zeek/http_get.pcap'));
const B = readFileSync(capturePath('ndpi/http_ipv6.pcap'));
const C = readFileSync(capturePath('grpc-go-book/grpc_Unary.pcapng'));

test('inputs fed in any chunking come out as one time-ordered pcapng, interfaces named after their nodes', () => {
  const out: Buffer[] = [];
  const m = new PcapMerger(['node-a', 'node-b', 'node-c'], 'pcapng', (b) => out.push(b));
  feed(m, 1, B, 1);
  // Nothing can be written while node-a and node-c have sent nothing; node-b's packets wait.
  expect(Buffer.concat(out).length).toBeLessThan(100);
  expect(m.queuedBytes(1)).toBeGreaterThan(0);
  feed(m, 0, A, 2);
  feed(m, 2, C, 3);
  m.end(0);
  m.end(1);
  m.end(2);
  m.finish();
  expect(m.done).toBe(true);
  expect(m.queuedBytes(1)).toBe(0);
  const merged = read(Buffer.concat(out));
  const inputs = [A, B, C].map(read);
  expect(merged.length).toBe(inputs.reduce((n, x) => n + x.length, 0));
  expect(m.packets).toBe(merged.length);
  for (let i = 1; i < merged.length; i++) expect(merged[i - 1]!.t <= merged[i]!.t).toBe(true);
  // Each input's packets are all there, in their order, under its own interface.
  const ifaces = new Set(merged.map((p) => p.iface));
  expect(ifaces.size).toBe(3);
  for (const input of inputs) {
    const iface = merged.find((p) => p.t === input[0]!.t && p.len === input[0]!.len)!.iface;
    expect(merged.filter((p) => p.iface === iface).map((p) => [p.t, p.len])).toEqual(input.map((p) => [p.t, p.len]));
  }
  const text = Buffer.concat(out).toString('latin1');
  for (const node of ['node-a', 'node-b', 'node-c']) expect(text).toContain(node);
});

test('classic pcap: one link type works, two are refused naming format; no packets still make a valid file', () => {
  const out: Buffer[] = [];
  const m = new PcapMerger(['x', 'y'], 'pcap', (b) => out.push(b));
  m.push(0, A);
  m.push(1, A);
  m.end(0);
  m.end(1);
  m.finish();
  expect(read(Buffer.concat(out))).toHaveLength(2 * read(A).length);

  // Ethernet and the gRPC capture's loopback link.
  expect(new Set([...read(A), ...read(C)].map((p) => p.linkType)).size).toBe(2);
  const bad = new PcapMerger(['x', 'y'], 'pcap', () => undefined);
  expect(() => {
    bad.push(0, A);
    bad.push(1, C);
    bad.end(0);
    bad.end(1);
  }).toThrow(expect.objectContaining({ code: 'invalid_argument', field: 'format' }));

  const empty: Buffer[] = [];
  const e = new PcapMerger(['x'], 'pcap', (b) => empty.push(b));
  // A worker with nothing to export still sends a valid, empty pcapng.
  e.push(0, pcapngSectionHeader());
  e.end(0);
  e.finish();
  expect(read(Buffer.concat(empty))).toEqual([]);
  expect(Buffer.concat(empty).length).toBe(24);
});
