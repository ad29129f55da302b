import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { capturePath, startWorkerProcess, waitFor } from '@kubeshark-mcp/testkit';
import { buildHub, validateConfig, DEFAULT_CONFIG, type Hub } from '../src';

/**
 * The documented investigation, played by the test as the assistant would: the worker bin replays
 * the shop demo capture (recorded from real traffic by scripts/demo/record.sh) with its cluster
 * map, the hub serves MCP over HTTP, and the official SDK client asks "why did the checkout fail
 * for user 12345 at about this minute?" using only MCP tools. Every finding is compared with
 * what the recorder saw happen (shop-checkout.facts.json), never read from it.
 */

const WORKER_DIR = path.dirname(require.resolve('@kubeshark-mcp/worker/package.json'));
const CAPTURE = path.join(WORKER_DIR, 'demo', 'demo_shop-checkout.pcap.gz');
const CLUSTER_MAP = path.join(WORKER_DIR, 'demo', 'shop-cluster-map.json');

interface Facts {
  started_at: string;
  checkouts: number;
  failed_checkouts: number;
  checkouts_by_user: Record<string, number>;
  product_views_not_found: number;
  failure: {
    user_id: string;
    request_id: string;
    checkout_at: string;
    checkout_status: number;
    payment_status: number;
    payment_body: { error: string; card_token: string; user_id: string };
    token: { token: string; user_id: string; expires_at: string; served_at: string };
  };
}
const facts = JSON.parse(readFileSync(capturePath('demo/shop-checkout.facts.json'), 'utf8')) as Facts;
const USER = facts.failure.user_id;

interface EndpointOut {
  ip: string;
  port: number;
  name?: string;
  namespace?: string;
  pod?: string;
  service?: string;
  node?: string;
}
interface CallOut {
  id: string;
  timestamp: string;
  protocol: string;
  src: EndpointOut;
  dst: EndpointOut;
  method: string;
  path: string;
  url: string;
  status_code: number;
  elapsed_time_us: number;
  failure?: string;
}
interface Message {
  headers: [string, string][];
  body?: string;
}
interface CallDetail {
  id: string;
  status_code: number;
  request: Message;
  response: Message;
}

let worker: ChildProcess;
let hub: Hub;
let client: Client;
const DATA_DIR = mkdtempSync(path.join(tmpdir(), 'hub-demo-'));

beforeAll(async () => {
  const started = await startWorkerProcess(['--listen', '127.0.0.1:0', '--node', 'shop-node-a', '--data-dir', DATA_DIR, '--capture', CAPTURE, '--cluster-map', CLUSTER_MAP]);
  worker = started.proc;
  const address = started.address;
  hub = await buildHub(validateConfig({ ...DEFAULT_CONFIG, host: '127.0.0.1', port: 0, workers: [address], workerDeadlineMs: 5000 }), { logger: false });
  await hub.app.listen({ host: '127.0.0.1', port: 0 });
  const url = new URL(`http://127.0.0.1:${(hub.app.server.address() as { port: number }).port}/mcp`);
  await waitFor('the worker to finish replaying', async () => {
    const body = (await (await fetch(new URL('/healthz', url))).json()) as { workers: { sources?: { state: string }[] }[] };
    const sources = body.workers[0]?.sources ?? [];
    return sources.length === 1 && sources[0]!.state === 'done' ? true : undefined;
  });
  client = new Client({ name: 'demo-investigation', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(url));
});

afterAll(async () => {
  await client?.close();
  await hub?.app.close();
  if (worker && worker.exitCode === null) {
    const exited = new Promise((r) => worker.once('exit', r));
    worker.kill('SIGKILL');
    await exited;
  }
  rmSync(DATA_DIR, { recursive: true, force: true });
});

async function tool<T>(name: string, args: Record<string, unknown>): Promise<T> {
  const res = (await client.callTool({ name, arguments: args })) as CallToolResult;
  if (res.isError) throw new Error(`${name} ${JSON.stringify(args)}: ${(res.content[0] as { text: string }).text}`);
  return res.structuredContent as T;
}

/** Every page of list_api_calls. */
async function listCalls(args: Record<string, unknown>): Promise<CallOut[]> {
  const out: CallOut[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 100; page++) {
    const r = await tool<{ calls: CallOut[]; nextCursor?: string }>('list_api_calls', { ...args, limit: 100, ...(cursor ? { cursor } : {}) });
    out.push(...r.calls);
    cursor = r.nextCursor;
    if (!cursor) return out;
  }
  throw new Error('list_api_calls kept paging');
}

const getCall = async (id: string): Promise<CallDetail> => (await tool<{ call: CallDetail }>('get_api_call', { id })).call;
const header = (m: Message, name: string): string | undefined => m.headers.find(([n]) => n.toLowerCase() === name)?.[1];
const ms = (iso: string): number => Date.parse(iso);
const iso = (t: number): string => new Date(t).toISOString();

// What the user reports: "my checkout failed at about hh:mm" - the minute, not the second.
const minuteStart = Math.floor(ms(facts.failure.checkout_at) / 60_000) * 60_000;
const window = { start: iso(minuteStart), end: iso(minuteStart + 60_000) };

/** Findings carried from one step to the next, as the assistant's notes. */
const found: { checkout?: CallOut; payment?: CallOut; paymentDetail?: CallDetail; token?: CallOut } = {};

test('step 1: apply_filter finds the user\'s checkouts in that minute, and list_api_calls the one that failed', async () => {
  const kfl = `http && method == "POST" && path == "/api/checkout" && request.body.contains("${USER}")`;
  const applied = await tool<{ matched: number; calls: CallOut[] }>('apply_filter', { kfl, ...window, limit: 100 });
  // The capture spans less than a minute: every checkout of the user is in the window.
  expect(applied.matched).toBe(facts.checkouts_by_user[USER]);
  expect(applied.calls.every((c) => c.dst.service === 'frontend' && c.dst.namespace === 'shop')).toBe(true);
  expect(applied.calls.filter((c) => c.status_code === 200)).toHaveLength(facts.checkouts_by_user[USER]! - 1);

  const failed = await listCalls({ kfl: `${kfl} && status_code >= 500`, ...window });
  expect(failed).toHaveLength(1);
  const checkout = failed[0]!;
  expect(checkout).toMatchObject({ method: 'POST', path: '/api/checkout', status_code: facts.failure.checkout_status, failure: 'HTTP 502 Bad Gateway' });
  expect(checkout.src).toMatchObject({ namespace: 'ingress-nginx', service: 'ingress-nginx-controller' });
  expect(checkout.dst).toMatchObject({ namespace: 'shop', service: 'frontend', node: 'shop-node-a' });
  expect(Math.abs(ms(checkout.timestamp) - ms(facts.failure.checkout_at))).toBeLessThan(50);
  found.checkout = checkout;

  // The user's other failures, if any, would show here: there are none, and the only other
  // non-2xx answers of the capture are product pages not found.
  const errors = await listCalls({ kfl: 'http && status_code >= 400 && dst.service.name == "frontend"', ...window });
  expect(errors.filter((c) => c.status_code >= 500)).toEqual([expect.objectContaining({ id: checkout.id })]);
  expect(errors.filter((c) => c.status_code === 404)).toHaveLength(facts.product_views_not_found);
});

test('step 2: get_api_call on the failed checkout says the payment failed upstream', async () => {
  const detail = await getCall(found.checkout!.id);
  expect(detail.status_code).toBe(502);
  expect(JSON.parse(detail.request.body!)).toMatchObject({ user_id: USER });
  expect(header(detail.request, 'x-user-id')).toBe(USER);
  expect(header(detail.request, 'x-request-id')).toBe(facts.failure.request_id);
  expect(JSON.parse(detail.response.body!)).toMatchObject({ error: 'payment failed', upstream: 'payment', upstream_status: 500, upstream_error: facts.failure.payment_body.error });
});

test('step 3: the 500 from payment during that checkout, and its payload', async () => {
  const c = found.checkout!;
  const during = { start: c.timestamp, end: iso(ms(c.timestamp) + Math.ceil(c.elapsed_time_us / 1000) + 1) };
  const payments = await listCalls({ kfl: 'http && dst.service.name == "payment" && status_code >= 500', ...during });
  expect(payments).toHaveLength(1);
  const payment = payments[0]!;
  expect(payment).toMatchObject({ method: 'POST', path: '/charge', status_code: facts.failure.payment_status, failure: 'HTTP 500 Internal Server Error' });
  expect(payment.src).toMatchObject({ namespace: 'shop', service: 'checkout', node: 'shop-node-b' });
  expect(payment.dst).toMatchObject({ namespace: 'payments', service: 'payment', node: 'shop-node-c' });
  // The only 500 from payment in the whole minute.
  expect((await listCalls({ kfl: 'http && dst.namespace == "payments" && status_code >= 500', ...window })).map((x) => x.id)).toEqual([payment.id]);

  const detail = await getCall(payment.id);
  const request = JSON.parse(detail.request.body!) as { user_id: string; card_token: string };
  const response = JSON.parse(detail.response.body!) as { error: string; card_token: string };
  expect(request.user_id).toBe(USER);
  expect(response.error).toBe('Invalid card token');
  expect(response).toEqual(expect.objectContaining(facts.failure.payment_body));
  expect(request.card_token).toBe(facts.failure.token.token);
  found.payment = payment;
  found.paymentDetail = detail;
});

test('step 4: the token-service call just before it handed out that card token, already expired', async () => {
  const c = found.checkout!;
  const p = found.payment!;
  // startsWith: the catalogue documents KFL's path without the query string, but the workers
  // match it with the query today (as list_api_calls shows it).
  const calls = await listCalls({ kfl: `http && dst.service.name == "token-service" && path.startsWith("/tokens") && query_string["user"] == "${USER}"`, start: c.timestamp, end: p.timestamp });
  expect(calls.length).toBeGreaterThanOrEqual(1);
  const token = calls[calls.length - 1]!;
  expect(token).toMatchObject({ method: 'GET', path: `/tokens?user=${USER}`, status_code: 200 });
  expect(token.src).toMatchObject({ service: 'checkout', namespace: 'shop' });
  expect(token.dst).toMatchObject({ service: 'token-service', namespace: 'payments', node: 'shop-node-c' });
  expect(ms(token.timestamp)).toBeLessThanOrEqual(ms(p.timestamp));

  const detail = await getCall(token.id);
  const body = JSON.parse(detail.response.body!) as { token: string; user_id: string; expires_at: string };
  const charged = (JSON.parse(found.paymentDetail!.request.body!) as { card_token: string }).card_token;
  expect(body.token).toBe(charged);
  expect(body).toMatchObject({ token: facts.failure.token.token, user_id: USER, expires_at: facts.failure.token.expires_at });
  // Expired when it was handed out: the root cause.
  expect(ms(body.expires_at)).toBeLessThan(ms(token.timestamp));

  // That token was handed out once; every other token call of the user returned a live one.
  const withToken = await listCalls({ kfl: `http && dst.service.name == "token-service" && response.body.contains("${charged}")`, ...window });
  expect(withToken.map((x) => x.id)).toEqual([token.id]);
  const all = await listCalls({ kfl: `http && dst.service.name == "token-service" && query_string["user"] == "${USER}"`, ...window });
  expect(all).toHaveLength(facts.checkouts_by_user[USER]!);
  for (const t of all.filter((x) => x.id !== token.id)) {
    const other = JSON.parse((await getCall(t.id)).response.body!) as { expires_at: string };
    expect(ms(other.expires_at)).toBeGreaterThan(ms(t.timestamp));
  }
  found.token = token;
});

test('the whole chain of the failed request, by its propagated x-request-id, in order', async () => {
  const chain = await listCalls({ kfl: `http && request.headers["x-request-id"] == "${facts.failure.request_id}"`, ...window });
  expect(chain.map((c) => `${c.src.service} -> ${c.dst.service} ${c.method} ${c.path.split('?')[0]} ${c.status_code}`)).toEqual([
    'ingress-nginx-controller -> frontend POST /api/checkout 502',
    'frontend -> checkout POST /checkout 502',
    'checkout -> inventory POST /reserve 200',
    'checkout -> token-service GET /tokens 200',
    'checkout -> payment POST /charge 500',
    'checkout -> inventory POST /release 200',
  ]);
  expect(chain.map((c) => c.id)).toEqual(expect.arrayContaining([found.checkout!.id, found.payment!.id, found.token!.id]));
});
