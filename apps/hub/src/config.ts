import { statSync } from 'node:fs';
import Ajv from 'ajv';

const isDirectory = (dir: string): boolean => statSync(dir, { throwIfNoEntry: false })?.isDirectory() ?? false;

/** The hub's configuration, validated once at start-up and frozen. */
export interface HubConfig {
  /** Address to listen on. Without auth (not available yet) only loopback is allowed. */
  host: string;
  port: number;
  /** Path of the MCP endpoint. */
  mcpPath: string;
  /** gRPC addresses (host:port) of the workers. */
  workers: string[];
  /** Deadline for one worker call, in milliseconds. */
  workerDeadlineMs: number;
  /** MCP sessions idle for longer are closed. */
  sessionIdleTimeoutMs: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /**
   * Where PCAP exports are written before download: the hub makes a private folder in it and
   * removes it on close. Default: the system temporary directory.
   */
  exportDir?: string;
  /** Largest PCAP export the hub accepts, in bytes; bigger ones are refused. */
  exportMaxBytes: number;
  /** How long a download link works; the file is deleted then. */
  exportTtlMs: number;
  /**
   * Base URL clients reach the hub at, for download links (e.g. behind a port-forward or a
   * proxy). Default: http://<host>:<port> of the listening hub.
   */
  publicUrl?: string;
}

export const DEFAULT_CONFIG: HubConfig = {
  host: 'localhost',
  port: 8898,
  mcpPath: '/mcp',
  workers: ['127.0.0.1:50151'],
  workerDeadlineMs: 10_000,
  sessionIdleTimeoutMs: 30 * 60 * 1000,
  logLevel: 'info',
  exportMaxBytes: 512 * 1024 * 1024,
  exportTtlMs: 60 * 60 * 1000,
};

const schema = {
  type: 'object',
  properties: {
    host: { type: 'string', minLength: 1 },
    port: { type: 'integer', minimum: 0, maximum: 65535 },
    mcpPath: { type: 'string', pattern: '^/[A-Za-z0-9/_-]*$' },
    workers: {
      type: 'array',
      minItems: 1,
      // One worker until multi-worker fan-out and merging land; several would need merged
      // percentiles, which are not implemented yet.
      maxItems: 1,
      items: { type: 'string', pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$' },
    },
    workerDeadlineMs: { type: 'integer', minimum: 100, maximum: 600_000 },
    sessionIdleTimeoutMs: { type: 'integer', minimum: 1000 },
    logLevel: { type: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
    exportDir: { type: 'string', minLength: 1 },
    exportMaxBytes: { type: 'integer', minimum: 1 },
    // At most 7 days: timers hold 32-bit milliseconds.
    exportTtlMs: { type: 'integer', minimum: 1000, maximum: 7 * 24 * 3600 * 1000 },
    // http(s)://host[:port][/prefix], no query, no fragment, no trailing slash.
    publicUrl: { type: 'string', pattern: '^https?://[^/?#\\s]+(/[^?#\\s]*[^/?#\\s])?$' },
  },
  required: ['host', 'port', 'mcpPath', 'workers', 'workerDeadlineMs', 'sessionIdleTimeoutMs', 'logLevel', 'exportMaxBytes', 'exportTtlMs'],
  additionalProperties: false,
} as const;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: string[]) {
    super(`invalid hub configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|::1|\[::1\])$/;

/** Validates a full configuration; every problem is listed, not just the first. */
export function validateConfig(input: unknown): Readonly<HubConfig> {
  const ajv = new Ajv({ allErrors: true, strict: true });
  const validate = ajv.compile(schema);
  const problems: string[] = [];
  if (!validate(input)) {
    for (const e of validate.errors ?? []) {
      const field = e.instancePath.replace(/^\//, '').replace(/\//g, '.') || (e.params as { additionalProperty?: string }).additionalProperty || 'config';
      if (e.keyword === 'maxItems' && field === 'workers') problems.push('workers: this version serves one worker; multi-worker fan-out is not implemented yet');
      else if (e.keyword === 'pattern' && field === 'publicUrl') problems.push('publicUrl: must be an http:// or https:// URL without a trailing slash, query or fragment');
      else problems.push(`${field}: ${e.message}`);
    }
  }
  const cfg = input as HubConfig;
  if (typeof cfg?.host === 'string' && !LOOPBACK.test(cfg.host)) {
    problems.push(`host: "${cfg.host}" is not a loopback address; without authentication (not available yet) the hub only listens on loopback`);
  }
  if (typeof cfg?.exportDir === 'string' && cfg.exportDir !== '' && !isDirectory(cfg.exportDir)) {
    problems.push(`exportDir: "${cfg.exportDir}" is not an existing directory`);
  }
  if (problems.length) throw new ConfigError(problems);
  return Object.freeze({ ...cfg, workers: Object.freeze([...cfg.workers]) as string[] });
}

/** Reads the configuration from the environment (and command-line flags) over the defaults. */
export function configFromEnv(env: NodeJS.ProcessEnv, argv: string[] = []): Readonly<HubConfig> {
  const raw: Record<string, unknown> = { ...DEFAULT_CONFIG };
  const int = (name: string, key: keyof HubConfig): void => {
    const v = env[name];
    if (v === undefined || v === '') return;
    raw[key] = /^-?\d+$/.test(v) ? Number(v) : v; // a non-number stays a string and fails validation by name
  };
  if (env.HUB_HOST) raw.host = env.HUB_HOST;
  int('HUB_PORT', 'port');
  if (env.HUB_MCP_PATH) raw.mcpPath = env.HUB_MCP_PATH;
  if (env.HUB_WORKERS) raw.workers = env.HUB_WORKERS.split(',').map((s) => s.trim()).filter(Boolean);
  int('HUB_WORKER_DEADLINE_MS', 'workerDeadlineMs');
  int('HUB_SESSION_IDLE_TIMEOUT_MS', 'sessionIdleTimeoutMs');
  if (env.HUB_LOG_LEVEL) raw.logLevel = env.HUB_LOG_LEVEL;
  if (env.HUB_EXPORT_DIR) raw.exportDir = env.HUB_EXPORT_DIR;
  if (env.HUB_EXPORT_MAX_MIB) {
    const v = env.HUB_EXPORT_MAX_MIB;
    raw.exportMaxBytes = /^\d+$/.test(v) ? Number(v) * 1024 * 1024 : v;
  }
  int('HUB_EXPORT_TTL_MS', 'exportTtlMs');
  if (env.HUB_PUBLIC_URL) raw.publicUrl = env.HUB_PUBLIC_URL.replace(/\/+$/, '');
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split('=', 2) as [string, string | undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new ConfigError([`${flag} needs a value`]);
      return v;
    };
    switch (flag) {
      case '--host':
        raw.host = value();
        break;
      case '--port': {
        const v = value();
        raw.port = /^\d+$/.test(v) ? Number(v) : v;
        break;
      }
      case '--worker':
        raw.workers = value().split(',').map((s) => s.trim()).filter(Boolean);
        break;
      default:
        throw new ConfigError([`unknown option ${flag} (known: --host, --port, --worker; see README for HUB_* variables)`]);
    }
  }
  return validateConfig(raw);
}
