export { buildHub } from './app';
export type { Hub } from './app';
export { configFromEnv, validateConfig, ConfigError, DEFAULT_CONFIG } from './config';
export type { HubConfig } from './config';
export { GrpcTrafficSource, toSourceError } from './grpc-source';
export type { WorkerConnection } from './grpc-source';
export { VERSION } from './version';
