#!/usr/bin/env node
// The shop scenario: five small JSON services on their own loopback addresses and a bounded,
// deterministic load through them, for scripts/demo/record.sh to capture.
//
//   ingress (127.0.10.100) -> frontend   POST /api/checkout {"user_id", "items"}, GET /api/products/:sku
//   frontend               -> checkout   POST /checkout
//   checkout               -> inventory  POST /reserve, POST /release (when the payment fails)
//   checkout               -> token-service GET /tokens?user=ID (the user's card token)
//   checkout               -> payment    POST /charge {"card_token", ...}
//   frontend               -> inventory  GET /items/:sku (404 for a discontinued SKU)
//
// Exactly one checkout fails: for user FAIL_USER, at checkout number FAIL_AT, token-service
// answers from a stale cache entry, a token whose expires_at is in the past; payment refuses it
// with 500 {"error": "Invalid card token"}, checkout releases the reservation and answers 502.
//
// usage: node scripts/demo/shop.mjs FACTS.json   (writes what happened, for the test and README)
import http from 'node:http';
import { writeFileSync } from 'node:fs';
import { PORT, workload } from './topology.mjs';

const CHECKOUTS = 300;
const INTERVAL_MS = 80;
const FAIL_USER = '12345';
const FAIL_AT = 183;
const USERS = ['10231', '10486', '11002', '11590', '12007', '12345', '12760', '13318', '14021', '14455', '15102', '15876'];
const CATALOGUE = {
  'SKU-1001': { name: 'Espresso beans 1 kg', price_cents: 2490 },
  'SKU-1002': { name: 'Burr grinder', price_cents: 12900 },
  'SKU-1003': { name: 'Milk jug 600 ml', price_cents: 1990 },
  'SKU-1004': { name: 'Tamper 58 mm', price_cents: 3450 },
  'SKU-1005': { name: 'Descaler', price_cents: 890 },
  'SKU-1006': { name: 'Cup set (6)', price_cents: 4200 },
  'SKU-1007': { name: 'Scale 0.1 g', price_cents: 2790 },
  'SKU-1008': { name: 'Knock box', price_cents: 2250 },
};
const DISCONTINUED = 'SKU-0999';
const TOKEN_TTL_MS = 15 * 60 * 1000;

/** mulberry32: a small seeded PRNG, so the users, items and views are the same every run. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = prng(20261126);
const idRand = prng(7);
const pick = (list) => list[Math.floor(rand() * list.length)];
const hex = (n) => Array.from({ length: n }, () => Math.floor(idRand() * 16).toString(16)).join('');

// ---- plumbing ----------------------------------------------------------------------------

function readJson(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      try {
        resolve(body ? JSON.parse(body) : undefined);
      } catch (err) {
        reject(err);
      }
    });
    req.on('error', reject);
  });
}

function send(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** One keep-alive agent per caller -> callee pair; the caller's pod IP is the source address. */
const agents = new Map();
function call(from, to, method, path, body, headers = {}) {
  const src = workload(from);
  const dst = workload(to);
  const key = `${from}->${to}`;
  if (!agents.has(key)) agents.set(key, new http.Agent({ keepAlive: true, maxSockets: 4 }));
  const text = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: dst.ip,
        port: dst.port,
        localAddress: src.ip,
        agent: agents.get(key),
        method,
        path,
        headers: {
          host: `${dst.service}.${dst.namespace}.svc.cluster.local:${dst.port}`,
          'user-agent': `${from}/${src.image.split(':').pop()}`,
          accept: 'application/json',
          ...(text !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } : {}),
          ...headers,
        },
      },
      (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (data += d));
        res.on('end', () => resolve({ status: res.statusCode, body: data ? JSON.parse(data) : undefined }));
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}

function serve(app, handler) {
  const w = workload(app);
  const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    handler(req, res).catch((err) => send(res, 500, { error: 'internal', detail: String(err) }));
  });
  return new Promise((resolve) => server.listen(w.port, w.ip, () => resolve(server)));
}

const trace = (req) => ({ 'x-request-id': req.headers['x-request-id'], 'x-user-id': req.headers['x-user-id'] });

// ---- the services ------------------------------------------------------------------------

/** Card tokens token-service handed out: what payment checks (the shared vault). */
const vault = new Map();
/** token-service's per-user cache. */
const tokenCache = new Map();
/** Requests (by x-request-id) token-service answers from the stale cache entry (the bug). */
const staleFor = new Set();
const facts = { checkouts: [], views: [], failure: undefined };

async function tokenService(req, res) {
  const url = new URL(req.url, 'http://token-service');
  if (req.method !== 'GET' || url.pathname !== '/tokens') return send(res, 404, { error: 'not found' });
  const user = url.searchParams.get('user');
  if (!user) return send(res, 400, { error: 'missing user' });
  const now = Date.now();
  if (staleFor.delete(req.headers['x-request-id'])) {
    // The stale replica: a token issued 18 minutes ago, expired 3 minutes ago.
    const issued = now - 18 * 60 * 1000;
    const token = { token: `tok_${hex(24)}`, user_id: user, issued_at: new Date(issued).toISOString(), expires_at: new Date(issued + TOKEN_TTL_MS).toISOString(), source: 'cache' };
    vault.set(token.token, token);
    facts.staleToken = { ...token, served_at: new Date(now).toISOString() };
    return send(res, 200, token, trace(req));
  }
  let token = tokenCache.get(user);
  if (!token || Date.parse(token.expires_at) <= now) {
    token = { token: `tok_${hex(24)}`, user_id: user, issued_at: new Date(now).toISOString(), expires_at: new Date(now + TOKEN_TTL_MS).toISOString(), source: 'issuer' };
    tokenCache.set(user, token);
    vault.set(token.token, token);
    return send(res, 200, token, trace(req));
  }
  return send(res, 200, { ...token, source: 'cache' }, trace(req));
}

async function payment(req, res) {
  if (req.method !== 'POST' || req.url !== '/charge') return send(res, 404, { error: 'not found' });
  const body = await readJson(req);
  const token = vault.get(body.card_token);
  const now = Date.now();
  if (!token || token.user_id !== body.user_id || Date.parse(token.expires_at) <= now) {
    const answer = {
      error: 'Invalid card token',
      code: 'card_token_expired',
      card_token: body.card_token,
      user_id: body.user_id,
      expired_at: token?.expires_at,
      request_id: req.headers['x-request-id'],
    };
    if (facts.failure) facts.failure.payment = { at: new Date(now).toISOString(), status: 500, body: answer };
    return send(res, 500, answer, trace(req));
  }
  return send(res, 200, { charge_id: `ch_${hex(16)}`, status: 'captured', amount_cents: body.amount_cents, currency: body.currency, user_id: body.user_id }, trace(req));
}

async function inventory(req, res) {
  const m = /^\/items\/([A-Z0-9-]+)$/.exec(req.url);
  if (req.method === 'GET' && m) {
    const item = CATALOGUE[m[1]];
    if (!item) return send(res, 404, { error: 'unknown sku', sku: m[1] }, trace(req));
    return send(res, 200, { sku: m[1], ...item, in_stock: 40 + (m[1].charCodeAt(7) % 7) }, trace(req));
  }
  if (req.method === 'POST' && req.url === '/reserve') {
    const body = await readJson(req);
    return send(res, 200, { reservation_id: `res_${hex(12)}`, user_id: body.user_id, items: body.items, hold_seconds: 600 }, trace(req));
  }
  if (req.method === 'POST' && req.url === '/release') {
    const body = await readJson(req);
    return send(res, 200, { reservation_id: body.reservation_id, released: true }, trace(req));
  }
  return send(res, 404, { error: 'not found' });
}

async function checkout(req, res) {
  if (req.method !== 'POST' || req.url !== '/checkout') return send(res, 404, { error: 'not found' });
  const body = await readJson(req);
  const h = trace(req);
  const user = body.user_id;
  const amount = body.items.reduce((n, i) => n + CATALOGUE[i.sku].price_cents * i.qty, 0);
  const reservation = await call('checkout', 'inventory', 'POST', '/reserve', { user_id: user, items: body.items }, h);
  const token = await call('checkout', 'token-service', 'GET', `/tokens?user=${encodeURIComponent(user)}`, undefined, h);
  const charge = await call('checkout', 'payment', 'POST', '/charge', { user_id: user, amount_cents: amount, currency: 'EUR', card_token: token.body.token, order_ref: body.order_ref }, h);
  if (charge.status !== 200) {
    await call('checkout', 'inventory', 'POST', '/release', { reservation_id: reservation.body.reservation_id, user_id: user }, h);
    return send(res, 502, { error: 'payment failed', order_ref: body.order_ref, user_id: user, upstream: 'payment', upstream_status: charge.status, upstream_error: charge.body?.error }, h);
  }
  return send(res, 200, { order_id: body.order_ref, status: 'confirmed', user_id: user, amount_cents: amount, charge_id: charge.body.charge_id }, h);
}

async function frontend(req, res) {
  const h = trace(req);
  const m = /^\/api\/products\/([A-Z0-9-]+)$/.exec(req.url);
  if (req.method === 'GET' && m) {
    const r = await call('frontend', 'inventory', 'GET', `/items/${m[1]}`, undefined, h);
    return send(res, r.status, r.body, h);
  }
  if (req.method === 'POST' && req.url === '/api/checkout') {
    const body = await readJson(req);
    const r = await call('frontend', 'checkout', 'POST', '/checkout', { ...body, order_ref: `ord_${req.headers['x-request-id'].slice(4)}` }, h);
    return send(res, r.status, r.body, h);
  }
  return send(res, 404, { error: 'not found' }, h);
}

// ---- the load ----------------------------------------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const out = process.argv[2];
  if (!out) throw new Error('usage: shop.mjs FACTS.json');
  const servers = await Promise.all([
    serve('frontend', frontend),
    serve('checkout', checkout),
    serve('payment', payment),
    serve('token-service', tokenService),
    serve('inventory', inventory),
  ]);
  const started = Date.now();
  const pending = [];
  for (let i = 0; i < CHECKOUTS; i++) {
    const at = started + i * INTERVAL_MS;
    if (at > Date.now()) await sleep(at - Date.now());
    const user = i === FAIL_AT ? FAIL_USER : pick(USERS);
    const skus = Object.keys(CATALOGUE);
    const items = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => ({ sku: pick(skus), qty: 1 + Math.floor(rand() * 2) }));
    const requestId = `req-${hex(16)}`;
    const headers = { 'x-request-id': requestId, 'x-user-id': user };
    const view = rand() < 0.5 ? (rand() < 0.08 ? DISCONTINUED : pick(skus)) : undefined;
    if (view) {
      pending.push(
        call('ingress-nginx-controller', 'frontend', 'GET', `/api/products/${view}`, undefined, { 'x-request-id': `req-${hex(16)}`, 'x-user-id': user }).then((r) => {
          facts.views.push({ sku: view, status: r.status });
          return r;
        }),
      );
    }
    if (i === FAIL_AT) {
      staleFor.add(requestId);
      facts.failure = { user_id: user, request_id: requestId, checkout_at: new Date().toISOString() };
    }
    const sent = new Date().toISOString();
    pending.push(
      call('ingress-nginx-controller', 'frontend', 'POST', '/api/checkout', { user_id: user, items, currency: 'EUR' }, headers).then((r) => {
        facts.checkouts.push({ at: sent, user_id: user, request_id: requestId, status: r.status });
        if (i === FAIL_AT) Object.assign(facts.failure, { status: r.status, body: r.body });
        return r;
      }),
    );
  }
  await Promise.all(pending);
  // Close every connection (FIN on the wire) before the servers go.
  for (const a of agents.values()) a.destroy();
  await sleep(300);
  await Promise.all(servers.map((s) => new Promise((r) => (s.closeAllConnections(), s.close(r)))));

  const failed = facts.checkouts.filter((c) => c.status !== 200);
  const f = facts.failure;
  const summary = {
    scenario: 'shop checkout: one payment refused for an expired card token',
    started_at: new Date(started).toISOString(),
    checkouts: facts.checkouts.length,
    failed_checkouts: failed.length,
    users: USERS,
    checkouts_by_user: Object.fromEntries(USERS.map((u) => [u, facts.checkouts.filter((c) => c.user_id === u).length])),
    product_views: facts.views.length,
    product_views_not_found: facts.views.filter((v) => v.status === 404).length,
    failure: {
      user_id: f.user_id,
      request_id: f.request_id,
      checkout_at: f.checkout_at,
      checkout_status: f.status,
      checkout_body: f.body,
      payment_status: f.payment?.status,
      payment_body: f.payment?.body,
      token: facts.staleToken,
    },
  };
  writeFileSync(out, `${JSON.stringify(summary, null, 2)}\n`);
  process.stdout.write(
    `shop: ${facts.checkouts.length} checkouts, ${failed.length} failed: user ${f.user_id} at ${f.checkout_at} -> ${f.status}; ` +
      `payment ${f.payment?.status} "${f.payment?.body.error}"; token-service served ${facts.staleToken?.token} expiring ${facts.staleToken?.expires_at}\n`,
  );
  if (failed.length !== 1 || f.status !== 502 || f.payment?.status !== 500) throw new Error('the scenario did not play out as designed');
}

main().catch((err) => {
  process.stderr.write(`shop: ${err.stack ?? err}\n`);
  process.exit(1);
});
