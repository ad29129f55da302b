export { buildHub, discoveryFor } from './app';
export type { Hub, BuildHubOptions } from './app';
export { DnsDiscovery, StaticDiscovery } from './discovery';
export type { WorkerDiscovery, WorkerSink, AddressResolver, DnsDiscoveryOptions } from './discovery';
export { configFromEnv, validateConfig, ConfigError, DEFAULT_CONFIG } from './config';
export type { HubConfig } from './config';
export { GrpcTrafficSource, toSourceError } from './grpc-source';
export type { WorkerConnection, WorkerStateName } from './grpc-source';
export { VERSION } from './version';
