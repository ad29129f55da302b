export { WorkerEngine, QueryError } from './engine';
export type { SourceState, FlowListQuery, FlowListResult } from './engine';
export { startWorkerServer } from './server';
export type { RunningWorkerServer } from './server';
export { workerHandlers, ARGUMENT_METADATA_KEY } from './service';
export { expandInputs, InputError } from './sources';
export { flowToModel, groupToModel, summaryToModel } from './model';
export { DEMO_DIR, DEFAULT_LISTEN, main } from './cli';
export { VERSION } from './version';
