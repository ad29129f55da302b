import { statSync } from 'node:fs';
import Ajv from 'ajv';
import { FilterComposer, TOOLSETS, type FilterPolicy, type Toolset } from '@kubeshark-mcp/mcp-core';

const isDirectory = (dir: string): boolean => statSync(dir, { throwIfNoEntry: false })?.isDirectory() ?? false;

/** The hub's configuration, validated once at start-up and frozen. */
export interface HubConfig {
  /** Address to listen on. Without auth (not available yet) only loopback is allowed. */
  host: string;
  port: number;
  /** Path of the MCP endpoint. */
  mcpPath: string;
  /** gRPC addresses (host:port) of the workers; may be empty when `workersDns` finds them. */
  workers: string[];
  /**
   * DNS discovery: `<name>:<port>` of a headless Service whose A/AAAA records are the workers.
   * Resolved every `workersDnsIntervalMs`; workers are added and removed as the records change.
   */
  workersDns?: string;
  /** How often `workersDns` is resolved again, in milliseconds. */
  workersDnsIntervalMs: number;
  /**
   * Kubernetes discovery: `<namespace>/<service>:<port>`; the ready endpoints of the Service's
   * EndpointSlices are the workers, listed every `workersDnsIntervalMs`.
   */
  workersK8s?: string;
  /** API server for `workersK8s` outside a pod (default: in-cluster). */
  kubeApi?: string;
  /** Token file for `kubeApi` (default: the pod's service account token). */
  kubeTokenFile?: string;
  /** Deadline for one worker call, in milliseconds. */
  workerDeadlineMs: number;
  /** MCP sessions idle for longer are closed. */
  sessionIdleTimeoutMs: number;
  /** Size budget of one MCP tool result, in tokens (about 4 characters each). */
  maxResultTokens: number;
  /** Tool results repeat their JSON as a text block: `auto` (default) for clients without structured content, `always`. */
  jsonText?: 'auto' | 'always';
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
  /**
   * DNS-rebinding protection: the Host header values `/mcp` accepts, `host` (any port) or
   * `host:port`, IPv6 in brackets. Default (filled in by `validateConfig`): the loopback names
   * `localhost`, `127.0.0.1`, `[::1]`, plus the host of `host` and of `publicUrl`.
   */
  allowedHosts?: string[];
  /**
   * Origin header values `/mcp` accepts when a request has one (browsers), as full origins
   * `http(s)://host[:port]` (without a port: any port). Default: http and https on the loopback
   * names and `host`, plus the origin of `publicUrl`.
   */
  allowedOrigins?: string[];
  /** MCP toolsets offered (default: all): l4, l7, kubernetes, status, pcap, snapshots, capture, extensions. */
  toolsets?: Toolset[];
  /** Leave out every MCP tool that changes state (snapshots, captures). */
  readOnly: boolean;
  /** Stateless MCP (no sessions, JSON answers), for several hub replicas behind a load balancer. */
  stateless: boolean;
  /** KFL filter ANDed into every filtered query (API calls, flows, exports). */
  kflGlobal?: string;
  /** Named KFL macros usable in every filter, e.g. {"https": "tls && (http || grpc)"}. */
  kflMacros?: Record<string, string>;
}

export const DEFAULT_CONFIG: HubConfig = {
  host: 'localhost',
  port: 8898,
  mcpPath: '/mcp',
  workers: ['127.0.0.1:50151'],
  workersDnsIntervalMs: 10_000,
  workerDeadlineMs: 10_000,
  sessionIdleTimeoutMs: 30 * 60 * 1000,
  maxResultTokens: 8000,
  logLevel: 'info',
  exportMaxBytes: 512 * 1024 * 1024,
  exportTtlMs: 60 * 60 * 1000,
  readOnly: false,
  stateless: false,
};

/** host:port, the host a DNS name, an IPv4 address or a bracketed IPv6 address. */
const WORKER_ADDRESS = '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$';

const schema = {
  type: 'object',
  properties: {
    host: { type: 'string', minLength: 1 },
    port: { type: 'integer', minimum: 0, maximum: 65535 },
    mcpPath: { type: 'string', pattern: '^/[A-Za-z0-9/_-]*$' },
    workers: {
      type: 'array',
      // Duplicates are reported below by name, with a clearer message than uniqueItems gives.
      items: { type: 'string', pattern: WORKER_ADDRESS },
    },
    workersDns: { type: 'string', pattern: WORKER_ADDRESS },
    workersDnsIntervalMs: { type: 'integer', minimum: 1000, maximum: 3_600_000 },
    workersK8s: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?:[0-9]{1,5}$' },
    kubeApi: { type: 'string', pattern: '^https?://[^/?#\\s]+$' },
    kubeTokenFile: { type: 'string', minLength: 1 },
    workerDeadlineMs: { type: 'integer', minimum: 100, maximum: 600_000 },
    sessionIdleTimeoutMs: { type: 'integer', minimum: 1000 },
    maxResultTokens: { type: 'integer', minimum: 1000, maximum: 200000 },
    jsonText: { type: 'string', enum: ['auto', 'always'] },
    logLevel: { type: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
    exportDir: { type: 'string', minLength: 1 },
    exportMaxBytes: { type: 'integer', minimum: 1 },
    // At most 7 days: timers hold 32-bit milliseconds.
    exportTtlMs: { type: 'integer', minimum: 1000, maximum: 7 * 24 * 3600 * 1000 },
    // http(s)://host[:port][/prefix], no query, no fragment, no trailing slash.
    publicUrl: { type: 'string', pattern: '^https?://[^/?#\\s]+(/[^?#\\s]*[^/?#\\s])?$' },
    // Entries are checked one by one below, with messages that say what is wrong.
    allowedHosts: { type: 'array', minItems: 1, items: { type: 'string' } },
    allowedOrigins: { type: 'array', minItems: 1, items: { type: 'string' } },
    toolsets: { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'string', enum: [...TOOLSETS] } },
    readOnly: { type: 'boolean' },
    stateless: { type: 'boolean' },
    kflGlobal: { type: 'string', maxLength: 4096 },
    kflMacros: { type: 'object', additionalProperties: { type: 'string', maxLength: 4096 } },
  },
  required: ['host', 'port', 'mcpPath', 'workers', 'workersDnsIntervalMs', 'workerDeadlineMs', 'sessionIdleTimeoutMs', 'maxResultTokens', 'logLevel', 'exportMaxBytes', 'exportTtlMs', 'readOnly', 'stateless'],
  additionalProperties: false,
} as const;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: string[]) {
    super(`invalid hub configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|::1|\[::1\])$/;

/** Host names a loopback client uses; always allowed unless the allow-lists are set explicitly. */
const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'] as const;
/** `host` or `host:port`: a DNS name, an IPv4 address or a bracketed IPv6 address (the plugin's syntax). */
const HOST_ENTRY = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(:([0-9]{1,5}))?$/;
/** A full origin `http(s)://host[:port]`, nothing after it. */
const ORIGIN_ENTRY = /^https?:\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(:([0-9]{1,5}))?$/;

const bracketed = (host: string): string => (host.includes(':') && !host.startsWith('[') ? `[${host}]` : host);
const unique = (values: string[]): string[] => [...new Set(values.map((v) => v.toLowerCase()))];

/** The Host allow-list when `allowedHosts` is not set: loopback names, `host`, and the host name of `publicUrl`. */
export function defaultAllowedHosts(config: Pick<HubConfig, 'host' | 'publicUrl'>): string[] {
  const hosts: string[] = [...LOOPBACK_NAMES, bracketed(config.host)];
  if (config.publicUrl) hosts.push(new URL(config.publicUrl).hostname);
  return unique(hosts);
}

/** The Origin allow-list when `allowedOrigins` is not set: http(s) on the default hosts' names (any port), and `publicUrl`'s origin. */
export function defaultAllowedOrigins(config: Pick<HubConfig, 'host' | 'publicUrl'>): string[] {
  const origins = [...LOOPBACK_NAMES, bracketed(config.host)].flatMap((h) => [`http://${h}`, `https://${h}`]);
  if (config.publicUrl) origins.push(new URL(config.publicUrl).origin);
  return unique(origins);
}

/** Problems with the entries of an allow-list (the schema has checked it is a non-empty array of strings). */
function allowListProblems(field: 'allowedHosts' | 'allowedOrigins', entries: unknown, variable: string): string[] {
  if (!Array.isArray(entries)) return [];
  const problems: string[] = [];
  entries.forEach((entry: unknown, i) => {
    if (typeof entry !== 'string') return;
    const where = `${field}.${i}`;
    if (entry.includes('*')) {
      problems.push(`${where}: "${entry}": wildcards are not allowed, they would switch off DNS-rebinding protection; list each ${field === 'allowedHosts' ? 'host name' : 'origin'} clients use in ${variable}`);
      return;
    }
    const m = (field === 'allowedHosts' ? HOST_ENTRY : ORIGIN_ENTRY).exec(entry);
    const port = m?.[3] === undefined ? undefined : Number(m[3]);
    if (!m || (port !== undefined && (port < 1 || port > 65535))) {
      problems.push(
        field === 'allowedHosts'
          ? `${where}: "${entry}" is not a host or host:port (e.g. hub.example.com, hub.example.com:8898, [::1]:8898; no scheme or path)`
          : `${where}: "${entry}" is not an origin: scheme, host and optional port, nothing after (e.g. https://app.example.com, http://localhost:3000)`,
      );
    }
  });
  return problems;
}

/** Ports 1-65535, no duplicate workers, and at least one way to find workers. */
function workerProblems(cfg: Partial<HubConfig> | undefined): string[] {
  const problems: string[] = [];
  const port = (address: string): number => Number(address.slice(address.lastIndexOf(':') + 1));
  const workers = Array.isArray(cfg?.workers) ? cfg.workers.filter((w): w is string => typeof w === 'string') : [];
  const seen = new Map<string, number>();
  workers.forEach((w, i) => {
    if (port(w) < 1 || port(w) > 65535) problems.push(`workers.${i}: "${w}" has port ${port(w)}; ports are 1-65535`);
    const key = w.toLowerCase();
    const first = seen.get(key);
    if (first !== undefined) problems.push(`workers.${i}: "${w}" is listed twice (also workers.${first}); list each worker once in HUB_WORKERS`);
    else seen.set(key, i);
  });
  if (typeof cfg?.workersDns === 'string' && (port(cfg.workersDns) < 1 || port(cfg.workersDns) > 65535)) problems.push(`workersDns: "${cfg.workersDns}" has port ${port(cfg.workersDns)}; ports are 1-65535`);
  if (Array.isArray(cfg?.workers) && cfg.workers.length === 0 && !cfg.workersDns && !cfg.workersK8s) {
    problems.push('workers: no workers: set HUB_WORKERS (host:port,...), HUB_WORKERS_DNS (<headless service>:<port>) or HUB_WORKERS_K8S (<namespace>/<service>:<port>)');
  }
  return problems;
}

/** The KFL policy of a configuration, as the MCP plugin takes it. */
export function filterPolicy(cfg: Pick<HubConfig, 'kflGlobal' | 'kflMacros'>): FilterPolicy {
  return { ...(cfg.kflGlobal ? { global: cfg.kflGlobal } : {}), ...(cfg.kflMacros ? { macros: cfg.kflMacros } : {}) };
}

/** The global filter and macros must compile (with positions in the message when not). */
function kflProblems(cfg: Partial<HubConfig> | undefined): string[] {
  if (typeof cfg?.kflGlobal !== 'string' && (typeof cfg?.kflMacros !== 'object' || cfg.kflMacros === null)) return [];
  try {
    new FilterComposer(filterPolicy(cfg as HubConfig));
    return [];
  } catch (err) {
    return [`kfl: ${(err as Error).message} (HUB_KFL_GLOBAL / HUB_KFL_MACROS)`];
  }
}

/** Validates a full configuration; every problem is listed, not just the first. */
export function validateConfig(input: unknown): Readonly<HubConfig> {
  const ajv = new Ajv({ allErrors: true, strict: true });
  const validate = ajv.compile(schema);
  const problems: string[] = [];
  if (!validate(input)) {
    for (const e of validate.errors ?? []) {
      const field = e.instancePath.replace(/^\//, '').replace(/\//g, '.') || (e.params as { additionalProperty?: string }).additionalProperty || 'config';
      if (e.keyword === 'pattern' && field === 'publicUrl') problems.push('publicUrl: must be an http:// or https:// URL without a trailing slash, query or fragment');
      else problems.push(`${field}: ${e.message}`);
    }
  }
  const cfg = input as HubConfig;
  problems.push(...workerProblems(cfg));
  if (typeof cfg?.host === 'string' && !LOOPBACK.test(cfg.host)) {
    problems.push(`host: "${cfg.host}" is not a loopback address; without authentication (not available yet) the hub only listens on loopback`);
  }
  if (typeof cfg?.exportDir === 'string' && cfg.exportDir !== '' && !isDirectory(cfg.exportDir)) {
    problems.push(`exportDir: "${cfg.exportDir}" is not an existing directory`);
  }
  problems.push(...kflProblems(cfg));
  problems.push(...allowListProblems('allowedHosts', cfg?.allowedHosts, 'HUB_ALLOWED_HOSTS'));
  problems.push(...allowListProblems('allowedOrigins', cfg?.allowedOrigins, 'HUB_ALLOWED_ORIGINS'));
  if (problems.length) throw new ConfigError(problems);
  const allowedHosts = cfg.allowedHosts ?? defaultAllowedHosts(cfg);
  const allowedOrigins = cfg.allowedOrigins ?? defaultAllowedOrigins(cfg);
  return Object.freeze({
    ...cfg,
    workers: Object.freeze([...cfg.workers]) as string[],
    allowedHosts: Object.freeze([...allowedHosts]) as string[],
    allowedOrigins: Object.freeze([...allowedOrigins]) as string[],
  });
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
  else if (env.HUB_WORKERS_DNS || env.HUB_WORKERS_K8S) raw.workers = []; // discovery alone, without the local default
  if (env.HUB_WORKERS_K8S) raw.workersK8s = env.HUB_WORKERS_K8S.trim();
  if (env.HUB_KUBE_API) raw.kubeApi = env.HUB_KUBE_API.replace(/\/+$/, '');
  if (env.HUB_KUBE_TOKEN_FILE) raw.kubeTokenFile = env.HUB_KUBE_TOKEN_FILE;
  if (env.HUB_WORKERS_DNS) raw.workersDns = env.HUB_WORKERS_DNS.trim();
  int('HUB_WORKERS_DNS_INTERVAL_MS', 'workersDnsIntervalMs');
  int('HUB_WORKER_DEADLINE_MS', 'workerDeadlineMs');
  int('HUB_SESSION_IDLE_TIMEOUT_MS', 'sessionIdleTimeoutMs');
  int('HUB_MAX_RESULT_TOKENS', 'maxResultTokens');
  if (env.HUB_JSON_TEXT) raw.jsonText = env.HUB_JSON_TEXT.trim();
  if (env.HUB_LOG_LEVEL) raw.logLevel = env.HUB_LOG_LEVEL;
  if (env.HUB_EXPORT_DIR) raw.exportDir = env.HUB_EXPORT_DIR;
  if (env.HUB_EXPORT_MAX_MIB) {
    const v = env.HUB_EXPORT_MAX_MIB;
    raw.exportMaxBytes = /^\d+$/.test(v) ? Number(v) * 1024 * 1024 : v;
  }
  int('HUB_EXPORT_TTL_MS', 'exportTtlMs');
  if (env.HUB_PUBLIC_URL) raw.publicUrl = env.HUB_PUBLIC_URL.replace(/\/+$/, '');
  const list = (v: string): string[] => v.split(',').map((s) => s.trim()).filter(Boolean);
  if (env.HUB_ALLOWED_HOSTS) raw.allowedHosts = list(env.HUB_ALLOWED_HOSTS);
  if (env.HUB_ALLOWED_ORIGINS) raw.allowedOrigins = list(env.HUB_ALLOWED_ORIGINS);
  const bool = (name: string, key: keyof HubConfig): void => {
    const v = env[name];
    if (v === undefined || v === '') return;
    raw[key] = /^(1|true|yes|on)$/i.test(v) ? true : /^(0|false|no|off)$/i.test(v) ? false : v;
  };
  if (env.HUB_TOOLSETS) raw.toolsets = list(env.HUB_TOOLSETS);
  bool('HUB_READ_ONLY', 'readOnly');
  bool('HUB_MCP_STATELESS', 'stateless');
  if (env.HUB_KFL_GLOBAL) raw.kflGlobal = env.HUB_KFL_GLOBAL;
  if (env.HUB_KFL_MACROS) {
    try {
      raw.kflMacros = JSON.parse(env.HUB_KFL_MACROS) as unknown;
    } catch {
      throw new ConfigError([`HUB_KFL_MACROS: not JSON; give an object of name -> filter, e.g. {"https": "tls && (http || grpc)"}`]);
    }
  }
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
