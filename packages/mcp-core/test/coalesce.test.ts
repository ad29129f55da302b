import http from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { coalesceStart } from '../src/coalesce';

/** A server on loopback whose handler gets each request; closed after the test. */
async function serve(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Counts the times a socket hands data to the OS (one per write, or per corked batch). */
function countFlushes(socket: Socket): () => number {
  let n = 0;
  const s = socket as unknown as { _writev: (...a: unknown[]) => void; _write: (...a: unknown[]) => void };
  const writev = s._writev.bind(socket);
  const write = s._write.bind(socket);
  s._writev = (...a) => (n++, writev(...a));
  s._write = (...a) => (n++, write(...a));
  return () => n;
}

/** What a streaming response writes: status and headers flushed first, an event, later the rest. */
function stream(res: http.ServerResponse, laterMs: number, then?: () => void): void {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.flushHeaders();
  res.write('id: 1\ndata: \n\n');
  setTimeout(() => {
    res.write('id: 2\ndata: {"result":1}\n\n');
    res.end();
    then?.();
  }, laterMs);
}

/** The socket writes a response took, once it has finished. */
function flushesOf(res: http.ServerResponse): Promise<number> {
  const count = countFlushes(res.socket!);
  return new Promise((resolve) => res.once('finish', () => setImmediate(() => resolve(count()))));
}

test('a response that ends within the hold leaves in one write, headers included', async () => {
  let flushes!: Promise<number>;
  let bodyWrittenAt = 0;
  const srv = await serve((_req, res) => {
    flushes = flushesOf(res);
    coalesceStart(res, 1000);
    stream(res, 20, () => (bodyWrittenAt = Date.now()));
  });
  const t0 = Date.now();
  const res = await fetch(srv.url);
  const headersAt = Date.now();
  expect(await res.text()).toBe('id: 1\ndata: \n\nid: 2\ndata: {"result":1}\n\n');
  // Nothing reached the client before the response was complete, and it went out at once.
  expect(headersAt).toBeGreaterThanOrEqual(bodyWrittenAt);
  expect(headersAt - t0).toBeGreaterThanOrEqual(19);
  expect(await flushes).toBe(1);
  await srv.close();
});

test('without it the same response takes several writes (what the hold saves)', async () => {
  let flushes!: Promise<number>;
  const srv = await serve((_req, res) => {
    flushes = flushesOf(res);
    stream(res, 20);
  });
  const res = await fetch(srv.url);
  await res.text();
  expect(await flushes).toBeGreaterThan(1);
  await srv.close();
});

test('a long response starts streaming after the hold: the client has its first event before the rest is written', async () => {
  let gotFirst!: () => void;
  const firstSeen = new Promise<void>((resolve) => (gotFirst = resolve));
  const srv = await serve((_req, res) => {
    coalesceStart(res, 30);
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.flushHeaders();
    res.write('id: 1\ndata: \n\n');
    // The rest only once the client has read the first event: no deadline to guess.
    void firstSeen.then(() => {
      res.write('id: 2\ndata: {"progress":1}\n\n');
      res.end();
    });
  });
  const res = await fetch(srv.url);
  const reader = res.body!.getReader();
  const first = await reader.read();
  expect(Buffer.from(first.value!).toString()).toBe('id: 1\ndata: \n\n');
  gotFirst();
  let rest = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    rest += Buffer.from(value).toString();
  }
  expect(rest).toBe('id: 2\ndata: {"progress":1}\n\n');
  await srv.close();
});

test('a client that leaves while the response is held: nothing is written, writes that asked hear it failed', async () => {
  let outcome!: Promise<{ err: unknown; threw: boolean }>;
  const srv = await serve((req, res) => {
    coalesceStart(res, 10_000);
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    outcome = new Promise((resolve) => {
      res.write('id: 1\ndata: \n\n', (err) => {
        // After the client left: the handler goes on writing and ending, as the SDK would.
        let threw = false;
        try {
          res.write('late');
          res.end();
        } catch {
          threw = true;
        }
        resolve({ err, threw });
      });
    });
    req.socket.destroy(); // the connection drops before anything was sent
  });
  await expect(fetch(srv.url)).rejects.toThrow();
  const { err, threw } = await outcome;
  expect(err).toBeInstanceOf(Error);
  expect(threw).toBe(false);
  await srv.close();
});

/** The chunks of a chunked HTTP response, as they were framed on the wire (read over a raw socket). */
async function rawChunks(url: string): Promise<string[]> {
  const { hostname, port } = new URL(url);
  const raw = await new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    const socket = net.connect(Number(port), hostname, () => socket.end(`GET / HTTP/1.1\r\nHost: ${hostname}\r\nConnection: close\r\n\r\n`));
    socket.on('data', (d: Buffer) => parts.push(d));
    socket.on('end', () => resolve(Buffer.concat(parts)));
    socket.on('error', reject);
  });
  let at = raw.indexOf('\r\n\r\n') + 4;
  const chunks: string[] = [];
  for (;;) {
    const eol = raw.indexOf('\r\n', at);
    const size = parseInt(raw.subarray(at, eol).toString(), 16);
    if (size === 0) return chunks;
    chunks.push(raw.subarray(eol + 2, eol + 2 + size).toString('latin1'));
    at = eol + 2 + size + 2;
  }
}

test('what was held reaches the client as one chunk: text, bytes and encodings in order, every callback called', async () => {
  const called: string[] = [];
  const srv = await serve((_req, res) => {
    coalesceStart(res, 1000);
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('id: 1\ndata: \n\n', () => called.push('first'));
    res.write(new TextEncoder().encode('data: é'));
    res.write('e9', 'hex', () => called.push('third'));
    res.end('\n\n');
  });
  const held = Buffer.concat([Buffer.from('id: 1\ndata: \n\ndata: é'), Buffer.from([0xe9])]).toString('latin1');
  expect(await rawChunks(srv.url)).toEqual([held, '\n\n']); // end's own data follows the release
  expect(called).toEqual(['first', 'third']);
  // Without the hold, each write is a chunk of its own (what the client would otherwise take apart).
  const plain = await serve((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('id: 1\ndata: \n\n');
    res.write('data: x');
    res.end('\n\n');
  });
  expect(await rawChunks(plain.url)).toEqual(['id: 1\ndata: \n\n', 'data: x', '\n\n']);
  await srv.close();
  await plain.close();
});
