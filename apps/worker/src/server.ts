import * as grpc from '@grpc/grpc-js';
import { workerServiceDefinition } from '@kubeshark-mcp/proto';
import type { WorkerEngine } from './engine';
import { workerHandlers } from './service';

export interface RunningWorkerServer {
  /** host:port actually bound (the port is real when 0 was asked for). */
  address: string;
  port: number;
  /** Stops accepting calls, waits briefly for running ones, then forces the rest closed. */
  close(graceMs?: number): Promise<void>;
}

/** Serves the Worker gRPC service for an engine on host:port (port 0 picks a free one). */
export async function startWorkerServer(engine: WorkerEngine, host: string, port: number): Promise<RunningWorkerServer> {
  const server = new grpc.Server();
  server.addService(workerServiceDefinition(), workerHandlers(engine) as unknown as grpc.UntypedServiceImplementation);
  const bound = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  const hostPart = host.includes(':') ? `[${host}]` : host;
  return {
    address: `${hostPart}:${bound}`,
    port: bound,
    close: (graceMs = 2000) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}
