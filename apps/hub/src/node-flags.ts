/**
 * Node flags the hub and the worker run with (`npm start` passes them; set them in
 * `NODE_OPTIONS` when you start either yourself).
 *
 * `--max-semi-space-size=32`: the young generation's semi-spaces grow to 32 MiB instead of
 * Node 20's 16 MiB. A tool call allocates a few hundred KiB that die within the call (decoded
 * rows, views, their JSON, the HTTP and SDK objects around them); with calls in flight the
 * default young generation fills every few dozen calls, and each scavenge copies what the calls
 * in flight still hold. Twice the room halves the scavenges for at most 32 MiB more memory a
 * process. In `npm run bench`, which gives the bare SDK server the same flags, a page of flows
 * through hub and worker went from 0.45-0.52 of the bare server's calls per second to 0.49-0.54,
 * a page of API calls from 0.47-0.54 to 0.53-0.58 (docs/performance.md).
 */
export const SERVER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=32'];
