import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CaptureReader, type RawPacket } from '@kubeshark-mcp/capture';
import { createWorkerClient, type Flow, type WorkerClient } from '@kubeshark-mcp/proto';
import { GOLDEN_DIR, capturePath, formatEpoch, grpcUnary, loadFrames, type GoldenFrame } from '@kubeshark-mcp/testkit';
import { PacketStore, SnapshotStore, WorkerEngine, startWorkerServer, type RunningWorkerServer } from '../src';

/**
 * PCAP export and snapshots over gRPC. The expectation for every exported packet is tshark's
 * reading of the source capture (fixtures/golden/<capture>/frames.tsv: timestamp, lengths and
 * the MD5 of the captured bytes), so the round trip is checked byte for byte without trusting
 * our own reader on both sides.
 */

const CAPTURES = ['zeek/http_get.pcap', 'ndpi/http_ipv6.pcap', 'grpc-go-book/grpc_Unary.pcapng'];

interface Seen {
  timeEpoch: string;
  len: number;
  capLen: number;
  md5: string;
  linkType: number;
}

function parse(file: Buffer): Seen[] {
  const out: Seen[] = [];
  const r = new CaptureReader((p: RawPacket) =>
    out.push({
      timeEpoch: formatEpoch({ sec: p.tsSec, nsec: p.tsNsec }),
      len: p.origLen,
      capLen: p.capLen,
      md5: createHash('md5').update(p.buf.subarray(p.offset, p.offset + p.capLen)).digest('hex'),
      linkType: p.linkType,
    }),
  );
  r.push(file);
  r.end();
  return out;
}

const expected = (frames: GoldenFrame[]) => frames.map((f) => ({ timeEpoch: f.timeEpoch, len: f.len, capLen: f.capLen, md5: f.md5 }));
const strip = (seen: Seen[]) => seen.map(({ linkType: _l, ...rest }) => rest);
const us = (epoch: string): number => {
  const [s, frac] = epoch.split('.') as [string, string];
  return Number(s) * 1e6 + Math.floor(Number(frac.padEnd(9, '0')) / 1000);
};

let dir: string;
let engine: WorkerEngine;
let server: RunningWorkerServer;
let client: WorkerClient;

function exportPcap(req: object): Promise<{ file: Buffer; chunks: { packets: number; done: boolean; total_packets: number; total_bytes: number }[] }> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    const chunks: { packets: number; done: boolean; total_packets: number; total_bytes: number }[] = [];
    const call = client.ExportPcap(req, { deadline: Date.now() + 10_000 });
    call.on('data', (c: { data: Buffer; packets: number; done: boolean; total_packets: number; total_bytes: number }) => {
      parts.push(c.data);
      chunks.push({ packets: c.packets, done: c.done, total_packets: c.total_packets, total_bytes: c.total_bytes });
    });
    call.on('error', reject);
    call.on('end', () => resolve({ file: Buffer.concat(parts), chunks }));
  });
}

const unary = <Res>(method: string, req: object): Promise<Res> => grpcUnary<Res>(client, method, req);

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'worker-export-'));
  // Small segments, so exports cross segment files.
  const store = PacketStore.open({ dir: path.join(dir, 'ring'), segmentBytes: 64 * 1024 });
  engine = new WorkerEngine('exp', 'test', store, new SnapshotStore(path.join(dir, 'snapshots')));
  await engine.replay(CAPTURES.map(capturePath));
  server = await startWorkerServer(engine, '127.0.0.1', 0);
  client = createWorkerClient(server.address);
});

afterAll(async () => {
  client.close();
  await server.close();
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

test('the store keeps every packet in segment files', () => {
  const s = engine.store!.stats();
  expect(s.packets).toBe(CAPTURES.reduce((n, c) => n + loadFrames(c).length, 0));
  expect(s.segments).toBeGreaterThan(3);
  expect(readdirSync(path.join(dir, 'ring')).length).toBe(s.segments);
});

test('exporting everything gives back every packet, byte for byte, with its timestamp', async () => {
  const { file, chunks } = await exportPcap({});
  const all = CAPTURES.flatMap((c) => loadFrames(c));
  expect(strip(parse(file))).toEqual(expected(all));
  const last = chunks[chunks.length - 1]!;
  expect(last).toMatchObject({ done: true, total_packets: all.length, total_bytes: file.length });
  expect(chunks.reduce((n, c) => n + c.packets, 0)).toBe(all.length);
  expect(chunks.length).toBeGreaterThan(2); // streamed in pieces
});

test('a time range exports exactly the packets tshark stamps inside it', async () => {
  const frames = loadFrames('grpc-go-book/grpc_Unary.pcapng');
  const since = us(frames[1000]!.timeEpoch);
  const until = us(frames[3000]!.timeEpoch);
  const { file } = await exportPcap({ since_us: since, until_us: until });
  const want = frames.filter((f) => us(f.timeEpoch) >= since && us(f.timeEpoch) <= until);
  expect(strip(parse(file))).toEqual(expected(want));
  expect(want.length).toBeGreaterThan(1000);
});

test('classic pcap export keeps nanosecond timestamps; mixed link types are refused for it', async () => {
  const frames = loadFrames('zeek/http_get.pcap');
  const since = us(frames[0]!.timeEpoch);
  const until = us(frames[frames.length - 1]!.timeEpoch);
  const { file } = await exportPcap({ since_us: since, until_us: until, format: 'pcap' });
  expect(file.readUInt32LE(0)).toBe(0xa1b23c4d);
  expect(strip(parse(file))).toEqual(expected(frames));
  const err = await exportPcap({ format: 'pcap' }).catch((e: grpc.ServiceError) => e);
  expect((err as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
  expect((err as grpc.ServiceError).details).toMatch(/more than one link type.*pcapng/);
});

test('exporting one flow gives the packets of its tshark conversation', async () => {
  const frames = loadFrames('ndpi/http_ipv6.pcap');
  const { flows } = await unary<{ flows: Flow[] }>('ListFlows', { ip: '2a03:b0c0:3:d0::70:1001', limit: 100, order_by: 'oldest' });
  const flow = flows[0]!;
  const { file } = await exportPcap({ flow_ids: [flow.id] });
  const got = strip(parse(file));
  // The flow's conversation in tshark's numbering: the stream whose first frame is at the flow's start.
  const stream = frames.find((f) => us(f.timeEpoch) === flow.first_seen_us && f.tcpStream !== undefined)!.tcpStream;
  expect(got).toEqual(expected(frames.filter((f) => f.tcpStream === stream)));
  expect(got.length).toBe(flow.client_to_server!.packets + flow.server_to_client!.packets);
});

test('address, port and protocol filters', async () => {
  const frames = CAPTURES.flatMap((c) => loadFrames(c));
  const udp = await exportPcap({ protocol: 'UDP' });
  expect(strip(parse(udp.file))).toEqual(expected(frames.filter((f) => f.udpStream !== undefined)));
  const https = await exportPcap({ protocol: 'TCP', ports: [443] });
  expect(strip(parse(https.file))).toEqual(expected(loadFrames('ndpi/http_ipv6.pcap').filter((f) => f.tcpStream !== undefined)));
  const byIp = await exportPcap({ ips: ['192.150.187.43'] });
  expect(strip(parse(byIp.file))).toEqual(expected(loadFrames('zeek/http_get.pcap')));
  expect(frames.length).toBeGreaterThan(parse(byIp.file).length);
  const bad = await exportPcap({ ips: ['300.1.1.1'] }).catch((e: grpc.ServiceError) => e);
  expect((bad as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
  expect((bad as grpc.ServiceError).metadata.get('x-argument')).toEqual(['ips']);
  const unknownFlow = await exportPcap({ flow_ids: ['other-node/3'] }).catch((e: grpc.ServiceError) => e);
  expect((unknownFlow as grpc.ServiceError).details).toMatch(/not a flow of node exp/);
});

test('a KFL filter exports the packets of the flows it selects: as API calls (grpc) or as flows (tcp_flow && dst.port == 443)', async () => {
  // tshark: the TCP stream that carried the gRPC request (its HEADERS frame with :method).
  const h2 = readFileSync(path.join(GOLDEN_DIR, 'grpc-go-book/grpc_Unary.pcapng', 'http2-frames.psv'), 'utf8').trim().split('\n').slice(1).map((l) => l.split('|'));
  const grpcStream = Number(h2.find((f) => f[9]!.includes('":method"'))![2]);
  const grpcFrames = loadFrames('grpc-go-book/grpc_Unary.pcapng').filter((f) => f.tcpStream === grpcStream);
  const byCall = await exportPcap({ kfl: 'grpc && grpc_method == "Greet"' });
  expect(strip(parse(byCall.file))).toEqual(expected(grpcFrames));
  const byFlow = await exportPcap({ kfl: 'tcp_flow && dst.port == 443' });
  expect(strip(parse(byFlow.file))).toEqual(expected(loadFrames('ndpi/http_ipv6.pcap').filter((f) => f.tcpStream !== undefined)));
  // Nothing selected: a valid capture with no packets, not everything.
  const none = await exportPcap({ kfl: 'http && status_code == 999' });
  expect(parse(none.file)).toEqual([]);
  expect(none.chunks[none.chunks.length - 1]).toMatchObject({ done: true, total_packets: 0 });
  const bad = await exportPcap({ kfl: 'respone.status == 200' }).catch((e: grpc.ServiceError) => e);
  expect((bad as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
  expect((bad as grpc.ServiceError).metadata.get('x-argument')).toEqual(['kfl']);
  expect((bad as grpc.ServiceError).details).toMatch(/unknown field "respone.status" at 1:1; did you mean/);
});

test('data boundaries report what the packet store can export', async () => {
  const b = await unary<{ packets: { oldest_us: number; newest_us: number } }>('GetDataBoundaries', {});
  const all = CAPTURES.flatMap((c) => loadFrames(c)).map((f) => us(f.timeEpoch));
  expect(b.packets).toEqual({ oldest_us: Math.min(...all), newest_us: Math.max(...all) });
});

describe('snapshots', () => {
  test('create, list, get, export and delete', async () => {
    const frames = loadFrames('ndpi/http_ipv6.pcap');
    const since = us(frames[0]!.timeEpoch);
    const until = us(frames[frames.length - 1]!.timeEpoch);
    const info = await unary<{ name: string; packets: number; bytes: number; flows: number; state: string }>('CreateSnapshot', { name: 'incident-1', since_us: since, until_us: until });
    expect(info).toMatchObject({ name: 'incident-1', packets: frames.length, state: 'complete' });
    expect(info.flows).toBe(15);
    const list = await unary<{ snapshots: { name: string }[] }>('ListSnapshots', {});
    expect(list.snapshots.map((s) => s.name)).toEqual(['incident-1']);
    expect(await unary('GetSnapshot', { name: 'incident-1' })).toMatchObject({ packets: frames.length, bytes: info.bytes });
    const fromSnapshot = await exportPcap({ snapshot: 'incident-1' });
    expect(strip(parse(fromSnapshot.file))).toEqual(expected(frames));
    const dup = await unary('CreateSnapshot', { name: 'incident-1' }).catch((e: grpc.ServiceError) => e);
    expect((dup as grpc.ServiceError).code).toBe(grpc.status.ALREADY_EXISTS);
    const badName = await unary('CreateSnapshot', { name: '../etc' }).catch((e: grpc.ServiceError) => e);
    expect((badName as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
    await unary('DeleteSnapshot', { name: 'incident-1' });
    const gone = await unary('GetSnapshot', { name: 'incident-1' }).catch((e: grpc.ServiceError) => e);
    expect((gone as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);
  });

  test('a snapshot outlives retention of the ring', async () => {
    const frames = loadFrames('zeek/http_get.pcap');
    await unary('CreateSnapshot', { name: 'kept', since_us: us(frames[0]!.timeEpoch), until_us: us(frames[frames.length - 1]!.timeEpoch) });
    // Retention deletes the ring's segments; the snapshot is a copy.
    for (const f of readdirSync(path.join(dir, 'ring'))) rmSync(path.join(dir, 'ring', f));
    const { file } = await exportPcap({ snapshot: 'kept' });
    expect(strip(parse(file))).toEqual(expected(frames));
  });

  test('an interrupted snapshot never shows up, and its leftovers are cleaned at start', () => {
    const snapDir = path.join(dir, 'snapshots');
    const tmp = path.join(snapDir, '.tmp-crashed-0000');
    mkdirSync(tmp);
    writeFileSync(path.join(tmp, 'packets.pcapng'), 'partial');
    expect(engine.snapshots!.list().map((s) => s.name)).not.toContain('crashed');
    new SnapshotStore(snapDir);
    expect(readdirSync(snapDir)).not.toContain('.tmp-crashed-0000');
  });
});

test('ListFlows and GetFlowSummary take a KFL filter over flow fields', async () => {
  const byKfl = await unary<{ flows: Flow[]; total: number }>('ListFlows', { kfl: 'tcp_flow && dst.port == 443', limit: 1000, order_by: 'oldest' });
  const byPort = await unary<{ flows: Flow[]; total: number }>('ListFlows', { protocol: 'TCP', port: 443, limit: 1000, order_by: 'oldest' });
  expect(byKfl.total).toBeGreaterThan(0);
  expect(byKfl.flows.map((f) => f.id)).toEqual(byPort.flows.filter((f) => f.server!.port === 443).map((f) => f.id));
  const udp = await unary<{ total_flows: number; udp: { flows: number } }>('GetFlowSummary', { kfl: 'udp_flow' });
  expect(udp.total_flows).toBe(udp.udp.flows);
  // tshark numbers UDP conversations per capture.
  const conversations = new Set(CAPTURES.flatMap((c) => loadFrames(c).filter((f) => f.udpStream !== undefined).map((f) => `${c}/${f.udpStream}`)));
  expect(udp.total_flows).toBe(conversations.size);
  const bad = await unary('ListFlows', { kfl: 'flow_state ==' }).catch((e: grpc.ServiceError) => e);
  expect((bad as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
  expect((bad as grpc.ServiceError).metadata.get('x-argument')).toEqual(['kfl']);
});
