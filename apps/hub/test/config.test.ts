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
