#!/usr/bin/env node
import { buildHub } from './app';
import { ConfigError, configFromEnv } from './config';

async function main(): Promise<void> {
  let config;
  try {
    config = configFromEnv(process.env, process.argv.slice(2));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`kubeshark-hub: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const { app } = await buildHub(config);
  const stop = async (signal: string): Promise<void> => {
    app.log.info(`${signal}: shutting down`);
    await app.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  await app.listen({ host: config.host, port: config.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  app.log.warn(`no authentication is configured: listening on loopback (${config.host}) only`);
  app.log.info(`workers: ${hubSource(config)}`);
  // Parsed by scripts/start.mjs: keep the shape.
  process.stdout.write(`MCP endpoint: http://localhost:${port}${config.mcpPath}\n`);
}

const hubSource = (config: { workers: string[]; workersDns?: string; workersDnsIntervalMs: number }): string =>
  [...(config.workers.length ? [config.workers.join(', ')] : []), ...(config.workersDns ? [`DNS ${config.workersDns} every ${config.workersDnsIntervalMs} ms`] : [])].join(' + ');

main().catch((err: unknown) => {
  process.stderr.write(`kubeshark-hub: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
