import { tmpdir } from 'node:os';
import { ConfigError, DEFAULT_CONFIG, configFromEnv, validateConfig } from '../src';

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

test('several workers are refused with the reason', () => {
  expect(() => configFromEnv({ HUB_WORKERS: '127.0.0.1:1,127.0.0.1:2' })).toThrow(/one worker/);
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
});
