import { tmpdir } from 'node:os';
import { ConfigError, DEFAULT_CONFIG, configFromEnv, validateConfig } from '../src';
import { filterPolicy } from '../src/config';

test('defaults: loopback on 8898, MCP at /mcp, one local worker', () => {
  const c = configFromEnv({});
  expect(c).toMatchObject({ host: 'localhost', port: 8898, mcpPath: '/mcp', workers: ['127.0.0.1:50151'] });
  expect(Object.isFrozen(c)).toBe(true);
});

test('environment and flags override the defaults, flags last', () => {
  const c = configFromEnv({ HUB_PORT: '9000', HUB_WORKERS: '10.1.2.3:7000', HUB_WORKER_DEADLINE_MS: '2500' }, ['--port', '9100', '--host=127.0.0.1']);
  expect(c).toMatchObject({ host: '127.0.0.1', port: 9100, workers: ['10.1.2.3:7000'], workerDeadlineMs: 2500 });
});

test('every problem is listed at once, and the hub refuses to start', () => {
  let err: unknown;
  try {
    configFromEnv({ HUB_PORT: 'eighty', HUB_WORKERS: 'no-port', HUB_LOG_LEVEL: 'loud' });
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  const problems = (err as ConfigError).problems.join('\n');
  expect(problems).toMatch(/port/);
  expect(problems).toMatch(/workers\.0/);
  expect(problems).toMatch(/logLevel/);
  expect((err as ConfigError).problems.length).toBeGreaterThanOrEqual(3);
});

test('without authentication the hub will not listen beyond loopback', () => {
  expect(() => validateConfig({ ...DEFAULT_CONFIG, host: '0.0.0.0' })).toThrow(/not a loopback address/);
  for (const host of ['localhost', '127.0.0.1', '::1']) expect(validateConfig({ ...DEFAULT_CONFIG, host }).host).toBe(host);
});

test('several workers are read from HUB_WORKERS, each validated', () => {
  expect(configFromEnv({ HUB_WORKERS: '127.0.0.1:1, 10.0.0.2:50151,[fd00::1]:7,worker-3.ns.svc:9' }).workers).toEqual(['127.0.0.1:1', '10.0.0.2:50151', '[fd00::1]:7', 'worker-3.ns.svc:9']);
  let err: unknown;
  try {
    configFromEnv({ HUB_WORKERS: '127.0.0.1:1,bad,10.0.0.2:70000' });
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  const problems = (err as ConfigError).problems.join('\n');
  expect(problems).toMatch(/workers\.1/);
  expect(problems).toMatch(/workers\.2: "10\.0\.0\.2:70000" has port 70000/);
  expect(problems).not.toMatch(/workers\.0/);
});

test('a worker listed twice is refused, naming both places', () => {
  expect(() => configFromEnv({ HUB_WORKERS: '127.0.0.1:1,127.0.0.2:1,127.0.0.1:1' })).toThrow(/workers\.2: "127\.0\.0\.1:1" is listed twice \(also workers\.0\)/);
  expect(() => configFromEnv({ HUB_WORKERS: 'Worker-A:1,worker-a:1' })).toThrow(/listed twice/);
});

test('HUB_WORKERS_DNS discovers workers from a headless Service; alone it replaces the default list', () => {
  const c = configFromEnv({ HUB_WORKERS_DNS: 'kubeshark-worker.kubeshark.svc:50151', HUB_WORKERS_DNS_INTERVAL_MS: '5000' });
  expect(c).toMatchObject({ workers: [], workersDns: 'kubeshark-worker.kubeshark.svc:50151', workersDnsIntervalMs: 5000 });
  expect(configFromEnv({}).workersDnsIntervalMs).toBe(10_000);
  const both = configFromEnv({ HUB_WORKERS: '10.0.0.9:1', HUB_WORKERS_DNS: 'w:2' });
  expect(both).toMatchObject({ workers: ['10.0.0.9:1'], workersDns: 'w:2' });
  expect(() => configFromEnv({ HUB_WORKERS_DNS: 'no-port' })).toThrow(/workersDns/);
  expect(() => configFromEnv({ HUB_WORKERS_DNS: 'w:0' })).toThrow(/workersDns: "w:0" has port 0/);
  expect(() => configFromEnv({ HUB_WORKERS_DNS: 'w:1', HUB_WORKERS_DNS_INTERVAL_MS: '10' })).toThrow(/workersDnsIntervalMs/);
  expect(() => validateConfig({ ...DEFAULT_CONFIG, workers: [] })).toThrow(/set HUB_WORKERS .*, HUB_WORKERS_DNS .* or HUB_WORKERS_K8S/);
});

test('unknown flags are refused', () => {
  expect(() => configFromEnv({}, ['--prot', '1'])).toThrow(/unknown option --prot/);
});

test('PCAP export settings: 512 MiB and 1 hour by default, overridable from the environment', () => {
  const d = configFromEnv({});
  expect(d).toMatchObject({ exportMaxBytes: 512 * 1024 * 1024, exportTtlMs: 3_600_000 });
  expect(d.exportDir).toBeUndefined();
  expect(d.publicUrl).toBeUndefined();
  const c = configFromEnv({ HUB_EXPORT_DIR: tmpdir(), HUB_EXPORT_MAX_MIB: '64', HUB_EXPORT_TTL_MS: '60000', HUB_PUBLIC_URL: 'https://hub.example.com/kubeshark/' });
  expect(c).toMatchObject({ exportDir: tmpdir(), exportMaxBytes: 64 * 1024 * 1024, exportTtlMs: 60_000, publicUrl: 'https://hub.example.com/kubeshark' });
});

test('bad PCAP export settings are all listed', () => {
  let err: unknown;
  try {
    configFromEnv({ HUB_EXPORT_DIR: '/no/such/dir', HUB_EXPORT_MAX_MIB: 'lots', HUB_EXPORT_TTL_MS: '10', HUB_PUBLIC_URL: 'ftp://hub' });
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  const problems = (err as ConfigError).problems.join('\n');
  expect(problems).toMatch(/exportDir: "\/no\/such\/dir" is not an existing directory/);
  expect(problems).toMatch(/exportMaxBytes/);
  expect(problems).toMatch(/exportTtlMs: must be >= 1000/);
  expect(problems).toMatch(/publicUrl: must be an http/);
  expect(() => validateConfig({ ...DEFAULT_CONFIG, publicUrl: 'http://localhost:8898?x=1' })).toThrow(/publicUrl/);
  expect(validateConfig({ ...DEFAULT_CONFIG, publicUrl: 'http://[::1]:8898' }).publicUrl).toBe('http://[::1]:8898');
});

test('the tool-result budget is configurable within sane bounds', () => {
  expect(configFromEnv({}).maxResultTokens).toBe(8000);
  expect(configFromEnv({ HUB_MAX_RESULT_TOKENS: '20000' }).maxResultTokens).toBe(20000);
  expect(() => configFromEnv({ HUB_MAX_RESULT_TOKENS: '500' })).toThrow(/maxResultTokens/);
  expect(configFromEnv({}).jsonText).toBeUndefined();
  expect(configFromEnv({ HUB_JSON_TEXT: 'always' }).jsonText).toBe('always');
  expect(() => configFromEnv({ HUB_JSON_TEXT: 'sometimes' })).toThrow(/jsonText/);
});

test('MCP modes: toolsets, read-only and stateless from the environment, each checked', () => {
  const cfg = configFromEnv({ HUB_TOOLSETS: 'l4, l7', HUB_READ_ONLY: 'true', HUB_MCP_STATELESS: '1' });
  expect(cfg).toMatchObject({ toolsets: ['l4', 'l7'], readOnly: true, stateless: true });
  expect(configFromEnv({})).toMatchObject({ readOnly: false, stateless: false });
  expect(configFromEnv({}).toolsets).toBeUndefined();
  expect(() => configFromEnv({ HUB_TOOLSETS: 'l4,everything' })).toThrow(/toolsets\.1: must be equal to one of the allowed values/);
  expect(() => configFromEnv({ HUB_READ_ONLY: 'maybe' })).toThrow(/readOnly: must be boolean/);
});

test('the KFL policy: a global filter and macros that must compile, with the position of a mistake', () => {
  const cfg = configFromEnv({ HUB_KFL_GLOBAL: 'http || grpc', HUB_KFL_MACROS: '{"https": "tls && (http || grpc)"}' });
  expect(filterPolicy(cfg)).toEqual({ global: 'http || grpc', macros: { https: 'tls && (http || grpc)' } });
  expect(() => configFromEnv({ HUB_KFL_GLOBAL: 'http && respone.status == 500' })).toThrow(/kfl: global filter: unknown field "respone.status" at 1:9; did you mean "status_code"\?/);
  expect(() => configFromEnv({ HUB_KFL_MACROS: '{"http": "tcp"}' })).toThrow(/macro name "http" is already a field/);
  expect(() => configFromEnv({ HUB_KFL_MACROS: 'https=tls' })).toThrow(/HUB_KFL_MACROS: not JSON/);
});
