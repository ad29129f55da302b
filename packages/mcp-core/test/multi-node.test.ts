import { type Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { type NodeCoverage, type Snapshot, type SnapshotResult } from '../src/index';
import { nodesLine } from '../src/tools/common';
import { CapableSource } from './memory-source';
import { closeInMemory, connectInMemory } from './in-memory';

/** What sources over several nodes add to the tools: per-node snapshots and coalesced coverage text. */


const connect = (source: CapableSource): Promise<Client> => connectInMemory(source);

afterEach(closeInMemory);

const snap = (node: string, packets: number): Snapshot => ({ name: 's1', node, since_us: 0, until_us: 0, created_at_us: 1_714_572_000_000_000, packets, bytes: packets * 100, flows: 1, state: 'complete' });

class TwoNodeSource extends CapableSource {
  override async createSnapshot(): Promise<SnapshotResult> {
    const snapshots = [snap('node-a', 3), snap('node-b', 5)];
    return { snapshot: snapshots[0]!, snapshots, nodes: [{ node: 'node-a', state: 'ok' }, { node: 'node-b', state: 'ok' }, { node: 'node-c', state: 'unavailable', message: 'connection refused' }] };
  }

  override async getSnapshot(): Promise<SnapshotResult> {
    return { snapshot: snap('node-b', 5), snapshots: [snap('node-b', 5)], nodes: [{ node: 'node-b', state: 'ok' }] };
  }
}

test('create_snapshot over several nodes lists each node\'s part and the coverage', async () => {
  const client = await connect(new TwoNodeSource());
  const r = (await client.callTool({ name: 'create_snapshot', arguments: { name: 's1' } })) as CallToolResult;
  expect(r.isError).toBeFalsy();
  const out = r.structuredContent as { snapshot: { node: string }; snapshots: { node: string; packets: number }[]; nodes: NodeCoverage[] };
  expect(out.snapshot.node).toBe('node-a');
  expect(out.snapshots.map((s) => [s.node, s.packets])).toEqual([['node-a', 3], ['node-b', 5]]);
  const text = (r.content[0] as { text: string }).text;
  expect(text).toMatch(/^Created snapshot s1 on node-a: .*\ns1 on node-b: .*\n\(nodes: node-a, node-b, node-c unavailable \(connection refused\)\)$/);
});

test('a snapshot one node holds keeps the one-snapshot shape', async () => {
  const client = await connect(new TwoNodeSource());
  const r = (await client.callTool({ name: 'get_snapshot', arguments: { name: 's1' } })) as CallToolResult;
  expect(Object.keys(r.structuredContent!).sort()).toEqual(['nodes', 'snapshot']);
});

test('nodes that failed with the same reason are named together, the reason once', () => {
  const nodes: NodeCoverage[] = [
    { node: 'a', state: 'ok' },
    { node: 'b', state: 'unavailable', message: 'connection refused' },
    { node: 'c', state: 'error', message: 'disk full' },
    { node: 'd', state: 'unavailable', message: 'connection refused' },
    { node: 'e', state: 'unavailable', message: 'timeout' },
  ];
  expect(nodesLine(nodes)).toBe('a, b & d unavailable (connection refused), c error (disk full), e unavailable (timeout)');
  expect(nodesLine([{ node: 'a', state: 'ok' }, { node: 'b', state: 'ok' }])).toBe('a, b');
  expect(nodesLine([])).toBe('no nodes');
});
