import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { TCP_HEALTH_FLAGS, capturePath, loadGolden, loadTcpHealth, type TcpHealthFlag } from '@kubeshark-mcp/testkit';
import { byEnds, expectedFlows, observed } from './helpers';
import { parsePortMap } from '../src/cli';

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
      // Rates only over spans of more than 5 ms.
      if ((f.duration_ms as number) > 5) expect(f).toHaveProperty('client_to_server.pps');
      else expect(f).not.toHaveProperty('client_to_server.pps');
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
  expect(missingWhat.stderr).toMatch(/--flows, --summary or --entries/);
  const unknown = await cli(['analyze', capturePath('zeek/http_get.pcap'), '--flow']);
  expect(unknown.code).toBe(2);
  expect(unknown.stderr).toMatch(/--flow/);
  const missing = await cli(['analyze', '/nonexistent.pcap', '--flows']);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toMatch(/capture not found: \/nonexistent\.pcap/);
  for (const [args, message] of [
    [['--port-map', 'http:80'], /--port-map: "http:80" is not protocol=port/],
    [['--port-map', 'gopher=70'], /--port-map: unknown protocol "gopher"/],
    [['--port-map', 'redis=70000'], /port 70000 of redis is not 1-65535/],
    [['--body-max-kib', '0'], /--body-max-kib must be a positive integer/],
    [['--max-entries', 'lots'], /--max-entries must be a positive integer/],
  ] as const) {
    const r = await cli(['serve', '--listen', '127.0.0.1:0', ...args]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  }
});

test('--port-map reads several protocols and ports', () => {
  expect(parsePortMap('http=8081,9000; redis=7000;http=81')).toEqual({ http: [8081, 9000, 81], redis: [7000] });
});

test.each(['zeek/tcp_retransmit-fast009.pcap', 'zeek/http_1000-requests-one-dropped-response.pcap.gz', 'suricata-verify/http-gap-simple.pcap'])(
  'analyze %s --flows carries the TCP health tshark reports',
  async (capture) => {
    const { code, stdout } = await cli(['analyze', capturePath(capture), '--flows']);
    expect(code).toBe(0);
    const flows = lines(stdout) as unknown as { client: { ip: string; port: number }; client_to_server: { tcp: Record<string, number> }; server_to_client: { tcp: Record<string, number> } }[];
    const golden = loadTcpHealth(capture)!;
    // Our field names for tshark's tcp.analysis flags.
    const names: Record<TcpHealthFlag, string> = {
      retransmission: 'retransmissions',
      fast_retransmission: 'fast_retransmissions',
      spurious_retransmission: 'spurious_retransmissions',
      out_of_order: 'out_of_order',
      duplicate_ack: 'duplicate_acks',
      zero_window: 'zero_windows',
      keep_alive: 'keep_alives',
      window_full: 'window_full',
      lost_segment: 'lost_segments',
      ack_lost_segment: 'acked_unseen_segments',
    };
    // Rows list the counters above zero only (a clean direction is {}).
    const rename = (c: Record<TcpHealthFlag, number>): Record<string, number> => Object.fromEntries(TCP_HEALTH_FLAGS.filter((f) => c[f] > 0).map((f) => [names[f], c[f]]));
    expect(flows).toHaveLength(golden.length);
    let nonZero = 0;
    golden.forEach((g, i) => {
      const f = flows[i]!;
      const aIsClient = g.a === `${f.client.ip}:${f.client.port}`;
      expect(f.client_to_server.tcp).toEqual(rename(aIsClient ? g.ab : g.ba));
      expect(f.server_to_client.tcp).toEqual(rename(aIsClient ? g.ba : g.ab));
      nonZero += Object.values(f.client_to_server.tcp).concat(Object.values(f.server_to_client.tcp)).filter((n) => n > 0).length;
    });
    expect(nonZero).toBeGreaterThan(0);
  },
);
