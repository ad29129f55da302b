#!/usr/bin/env node
// `npm start`: one worker and the hub, wired together, for a laptop or a demo.
//
//   npm start                          the worker replays its embedded demo captures (the shop
//                                      scenario among them) with the demo cluster map
//   npm start -- --capture DIR_OR_FILE  replay your own captures instead (repeatable)
//
// The worker listens on a free loopback port; the hub on HUB_PORT (default 8898) and prints the
// MCP URL. Ctrl-C stops both; if either exits, the other is stopped too.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const workerCli = path.join(root, 'apps/worker/dist/cli.js');
const hubMain = path.join(root, 'apps/hub/dist/main.js');
const nodeFlags = path.join(root, 'apps/hub/dist/node-flags.js');

for (const f of [workerCli, hubMain, nodeFlags]) {
  if (!existsSync(f)) {
    console.error(`start: ${path.relative(root, f)} is missing; run "npm ci && npm run build" first.`);
    process.exit(1);
  }
}

/** The Node flags hub and worker run with (apps/hub/src/node-flags.ts says why). */
const { SERVER_NODE_FLAGS } = createRequire(import.meta.url)(nodeFlags);

const children = new Set();
let stopping = false;

function stopAll(code) {
  if (stopping) return;
  stopping = true;
  for (const c of children) c.kill('SIGTERM');
  // Whatever has not stopped within 5 s is killed, so that nothing outlives this script.
  setTimeout(() => {
    for (const c of children) c.kill('SIGKILL');
    process.exit(code);
  }, 5000).unref();
  const done = () => children.size === 0 && process.exit(code);
  for (const c of children) c.once('exit', () => (children.delete(c), done()));
  done();
}

function run(name, args, env, onLine) {
  const child = spawn(process.execPath, [...SERVER_NODE_FLAGS, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  let buf = '';
  child.stdout.on('data', (d) => {
    process.stdout.write(d);
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      onLine?.(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  child.on('exit', (code, signal) => {
    children.delete(child);
    if (!stopping) {
      console.error(`start: ${name} exited (${signal ?? code}); stopping.`);
      stopAll(code || 1);
    }
  });
  return child;
}

const passthrough = process.argv.slice(2);
process.on('SIGINT', () => stopAll(0));
process.on('SIGTERM', () => stopAll(0));

run('worker', [workerCli, 'serve', '--listen', '127.0.0.1:0', ...passthrough], {}, (line) => {
  const m = / listening on (\S+)/.exec(line);
  if (!m) return;
  run('hub', [hubMain], { HUB_WORKERS: m[1], HUB_LOG_LEVEL: process.env.HUB_LOG_LEVEL ?? 'warn' }, (hubLine) => {
    if (hubLine.startsWith('MCP endpoint: ')) {
      console.log(`\nReady. Point your MCP client at ${hubLine.slice('MCP endpoint: '.length)}  (Ctrl-C to stop)\n`);
    }
  });
});
