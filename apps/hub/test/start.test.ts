import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { REPO_ROOT } from '@kubeshark-mcp/testkit';
import { SERVER_NODE_FLAGS } from '../src';

/**
 * The README's start command (`npm start`, scripts/start.mjs) as a user runs it: worker and hub
 * come up with the demo captures, the hub prints the MCP URL, the official SDK client finds the
 * demo's traffic there, both processes run with the hub's Node flags, and Ctrl-C stops them.
 * On port 0 (HUB_PORT) instead of 8898, so it can run beside anything.
 */

let start: ChildProcess | undefined;

afterEach(() => {
  if (start && start.exitCode === null) start.kill('SIGKILL');
});

/** A process's children (Linux: /proc/<pid>/task/<pid>/children). */
const childPids = (pid: number): number[] => readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);

/** A process's command line, as its arguments. */
const commandLine = (pid: number): string[] => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);

test('npm start serves the demo over MCP, hub and worker with the server Node flags, and stops both on SIGINT', async () => {
  start = spawn(process.execPath, [path.join(REPO_ROOT, 'scripts', 'start.mjs')], {
    env: { ...process.env, HUB_PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const proc = start;
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "Ready" line in 60 s:\n${out}`)), 60_000);
    proc.stdout!.on('data', () => {
      const m = /Ready\. Point your MCP client at (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    proc.once('exit', (code) => reject(new Error(`start exited (${code}):\n${out}`)));
  });
  expect(url).toMatch(/^http:\/\/localhost:\d+\/mcp$/);

  const pids = childPids(proc.pid!);
  const commands = pids.map(commandLine);
  expect(commands).toHaveLength(2);
  for (const cmd of commands) expect(cmd.slice(1, 1 + SERVER_NODE_FLAGS.length)).toEqual([...SERVER_NODE_FLAGS]);
  expect(commands.map((c) => path.basename(c[1 + SERVER_NODE_FLAGS.length]!)).sort()).toEqual(['cli.js', 'main.js']);

  const client = new Client({ name: 'start-test', version: '0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url.replace('localhost', '127.0.0.1'))));
  try {
    // The demo shop's failed payment is there: the embedded default is useful as it stands.
    const r = (await client.callTool({ name: 'list_api_calls', arguments: { kfl: 'status_code == 500', limit: 5 } })) as CallToolResult;
    expect(r.isError).toBeFalsy();
    const calls = (r.structuredContent as { calls: { path: string; status_code: number }[] }).calls;
    expect(calls.length).toBeGreaterThan(0);
    expect(calls.every((c) => c.status_code === 500)).toBe(true);
  } finally {
    await client.close();
  }

  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  proc.kill('SIGINT');
  expect(await exited).toBe(0);
  // Both children are gone (once reaped: they may outlive the script by a moment as zombies).
  const alive = (pid: number): boolean => {
    try {
      return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  };
  for (let i = 0; i < 100 && pids.some(alive); i++) await new Promise((r) => setTimeout(r, 50));
  expect(pids.filter(alive)).toEqual([]);
}, 90_000);
