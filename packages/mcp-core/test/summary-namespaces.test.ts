import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { closeInMemory, connectInMemory } from './in-memory';
import { MemorySource, summaryWithHandshake } from './memory-source';

/** get_l4_flow_summary shows traffic by namespace and cross-namespace pairs when the source has them (cut to top by the source). */

afterEach(closeInMemory);

test('by_namespace and cross_namespace in the structured result and the text', async () => {
  const summary = {
    ...summaryWithHandshake(400),
    by_namespace: [
      { namespace: 'shop', flows: 5, packets: 50, bytes: 5000 },
      { namespace: '', flows: 2, packets: 8, bytes: 900 },
      { namespace: 'payments', flows: 1, packets: 4, bytes: 400 },
    ],
    cross_namespace: [{ src_namespace: 'shop', dst_namespace: 'payments', flows: 1, bytes: 400 }],
  };
  const client = await connectInMemory(new MemorySource([], [], summary));
  const r = (await client.callTool({ name: 'get_l4_flow_summary', arguments: {} })) as CallToolResult;
  const s = r.structuredContent as { by_namespace: { namespace: string }[]; cross_namespace: unknown[] };
  expect(s.by_namespace.map((n) => n.namespace)).toEqual(['shop', '', 'payments']);
  expect(s.cross_namespace).toEqual([{ src_namespace: 'shop', dst_namespace: 'payments', flows: 1, bytes: 400 }]);
  const text = (r.content[0] as { text: string }).text;
  expect(text).toContain('By namespace: shop 5 flows/5000 B; (outside the cluster) 2 flows/900 B');
  expect(text).toContain('Cross-namespace: shop -> payments 1 flows/400 B');
  // Without identities, neither appears.
  const plain = await connectInMemory(new MemorySource([], [], summaryWithHandshake(400)));
  const p = (await plain.callTool({ name: 'get_l4_flow_summary', arguments: {} })) as CallToolResult;
  expect(p.structuredContent).not.toHaveProperty('by_namespace');
});
