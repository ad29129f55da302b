import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from './gen/worker';
import type { WorkerClient } from './gen/kubeshark/worker/v1/Worker';
import type { WorkerHandlers } from './gen/kubeshark/worker/v1/Worker';
import { decodeEntryFrame, decodeFlowList, encodeEntryFrame, encodeFlowList } from './page-codec';

/** Trailing metadata key naming the request field an INVALID_ARGUMENT (or NOT_FOUND) refers to. */
export const ARGUMENT_METADATA_KEY = 'x-argument';

/** Absolute path of worker.proto, shipped next to dist/. */
export const WORKER_PROTO_PATH = path.join(__dirname, '..', 'worker.proto');

/**
 * The loader options the generated types were made with (see the `generate` script): keep
 * them in step, or the runtime objects stop matching the types.
 */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

let cached: ProtoGrpcType | undefined;

/** Loads worker.proto once and returns the typed package definition. */
export function loadWorkerProto(): ProtoGrpcType {
  if (!cached) {
    const def = protoLoader.loadSync(WORKER_PROTO_PATH, LOADER_OPTIONS);
    usePageCodec(def);
    cached = grpc.loadPackageDefinition(def) as unknown as ProtoGrpcType;
  }
  return cached;
}

/**
 * The answers that carry pages, StreamEntries' (API calls) and ListFlows' (flows), go through the
 * hand-written codec both ways (page-codec.ts), with protobufjs for what it leaves alone.
 * Client and server are made from this one definition, so the worker and the hub both use it.
 */
function usePageCodec(def: protoLoader.PackageDefinition): void {
  const service = def['kubeshark.worker.v1.Worker'] as protoLoader.ServiceDefinition;
  const codecs = [
    [service.StreamEntries!, encodeEntryFrame, decodeEntryFrame],
    [service.ListFlows!, encodeFlowList, decodeFlowList],
  ] as const;
  for (const [method, encode, decode] of codecs) {
    const { responseSerialize: serialize, responseDeserialize: deserialize } = method;
    (method as { responseSerialize: typeof serialize }).responseSerialize = (value) => encode(value) ?? serialize(value);
    (method as { responseDeserialize: typeof deserialize }).responseDeserialize = (bytes) => decode(bytes) ?? deserialize(bytes);
  }
}

/** The Worker service definition, for `server.addService`. */
export function workerServiceDefinition(): grpc.ServiceDefinition {
  return loadWorkerProto().kubeshark.worker.v1.Worker.service;
}

/** Creates a client for one worker. */
export function createWorkerClient(
  address: string,
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  options?: grpc.ChannelOptions,
): WorkerClient {
  const Ctor = loadWorkerProto().kubeshark.worker.v1.Worker;
  return new Ctor(address, credentials, options);
}

export type { WorkerClient, WorkerHandlers };
export { decodeEntryFrame, decodeFlowList, encodeEntryFrame, encodeFlowList } from './page-codec';
export type { ExchangeRequest, ExchangeRequest__Output } from './gen/kubeshark/worker/v1/ExchangeRequest';
export type { ExchangeReply, ExchangeReply__Output } from './gen/kubeshark/worker/v1/ExchangeReply';
export type { Flow__Output as Flow } from './gen/kubeshark/worker/v1/Flow';
export type { FlowGroup__Output as FlowGroup } from './gen/kubeshark/worker/v1/FlowGroup';
export type { Endpoint__Output as Endpoint } from './gen/kubeshark/worker/v1/Endpoint';
export type { DirectionStats__Output as DirectionStats } from './gen/kubeshark/worker/v1/DirectionStats';
export type { Percentiles__Output as Percentiles } from './gen/kubeshark/worker/v1/Percentiles';
export type { ListFlowsRequest__Output as ListFlowsRequest } from './gen/kubeshark/worker/v1/ListFlowsRequest';
export type { ListFlowsResponse__Output as ListFlowsResponse } from './gen/kubeshark/worker/v1/ListFlowsResponse';
export type { GetFlowSummaryRequest__Output as GetFlowSummaryRequest } from './gen/kubeshark/worker/v1/GetFlowSummaryRequest';
export type { FlowSummary__Output as FlowSummary } from './gen/kubeshark/worker/v1/FlowSummary';
export type { Talker__Output as Talker } from './gen/kubeshark/worker/v1/Talker';
export type { ProtocolTotals__Output as ProtocolTotals } from './gen/kubeshark/worker/v1/ProtocolTotals';
export type { WorkerStatus__Output as WorkerStatus } from './gen/kubeshark/worker/v1/WorkerStatus';
export type { CaptureSource__Output as CaptureSource } from './gen/kubeshark/worker/v1/CaptureSource';
export type { CaptureInfo__Output as CaptureInfo } from './gen/kubeshark/worker/v1/CaptureInfo';
export type { TargetingStatus__Output as TargetingStatus } from './gen/kubeshark/worker/v1/TargetingStatus';
export type { DecodeCounter__Output as DecodeCounter } from './gen/kubeshark/worker/v1/DecodeCounter';
export type { DataBoundaries__Output as DataBoundaries } from './gen/kubeshark/worker/v1/DataBoundaries';
export type { TimeWindow__Output as TimeWindow } from './gen/kubeshark/worker/v1/TimeWindow';
export type { L4Protocol__Output as L4Protocol } from './gen/kubeshark/worker/v1/L4Protocol';
export type { Aggregate__Output as Aggregate } from './gen/kubeshark/worker/v1/Aggregate';
