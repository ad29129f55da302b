import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv-provider.js';
import { TOOL_CATALOGUE, ToolRegistry, listL4Flows } from '../src/index';
import { MemorySource, ipPairGroup, tcpFlow, udpFlow } from './memory-source';

/**
 * Output schemas as a client checks them: compiled by the SDK client's validator (Ajv with
 * allErrors), including list_l4_flows' rows, which are `$defs` reached by `$ref`.
 */

const sdk = new AjvJsonSchemaValidator();

test('every built-in tool has an output schema the SDK client compiles', () => {
  expect(TOOL_CATALOGUE.length).toBeGreaterThan(10);
  for (const { tool } of TOOL_CATALOGUE) expect(() => sdk.getValidator(tool.outputSchema)).not.toThrow();
});

test('list_l4_flows results pass the client check, and a bad field deep in a row fails it by its path', async () => {
  const registry = new ToolRegistry();
  registry.register(listL4Flows);
  const source = new MemorySource([tcpFlow, udpFlow], [ipPairGroup]);
  const ctx = { source, signal: new AbortController().signal, protocolVersion: '2025-11-25' };
  const check = sdk.getValidator(listL4Flows.outputSchema);
  const flows = await registry.call('list_l4_flows', { limit: 10 }, ctx);
  const groups = await registry.call('list_l4_flows', { limit: 10, aggregate: 'ip_pair' }, ctx);
  for (const r of [flows, groups]) {
    expect(r.isError).toBeUndefined();
    expect(check(r.structuredContent)).toMatchObject({ valid: true });
  }
  const page = flows.structuredContent as { flows: Record<string, Record<string, unknown>>[] };
  expect(page.flows).toHaveLength(2);
  const row = page.flows[0]!;
  const bad = { ...page, flows: [{ ...row, server_to_client: { ...row.server_to_client, tcp: { retransmissions: -1 } } }] };
  const verdict = check(bad);
  expect(verdict.valid).toBe(false);
  expect(verdict.errorMessage).toMatch(/flows\/0\/server_to_client\/tcp/);
  const group = (groups.structuredContent as { groups: Record<string, unknown>[] }).groups[0]!;
  expect(check({ ...(groups.structuredContent as object), groups: [{ ...group, client_to_server: { packets: 'many' } }] }).valid).toBe(false);
});
