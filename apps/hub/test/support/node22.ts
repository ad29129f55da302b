import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

/**
 * A Node 22 binary for the MCP conformance runner and the MCP Inspector, which need Node >= 22
 * while the repository runs on Node 20.
 *
 * It comes from the npm registry (the `node-<platform>-<arch>` package at an exact version: a
 * plain tarball with `bin/node`, no install script). It is deliberately NOT a devDependency of
 * the workspace: that package declares a bin named `node`, so npm would link it as
 * node_modules/.bin/node and every npm script (jest, tsc, the bench) would silently run on
 * Node 22 instead of the Node the machine has. It is installed once, on first use, into
 * node_modules/.cache/ with the ordinary npm client (exact version, npm checks the registry's
 * integrity; `npm ci` wipes it with the rest of node_modules).
 *
 * `KUBESHARK_NODE22=/path/to/node` uses a binary you already have; on Node >= 22 the running
 * binary is used.
 */

export const NODE22_VERSION = '22.23.3';

const run = promisify(execFile);

/** The repository root: the nearest ancestor with package-lock.json. */
export function repoRoot(): string {
  let dir = __dirname;
  while (!existsSync(path.join(dir, 'package-lock.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no package-lock.json above ${__dirname}`);
    dir = up;
  }
  return dir;
}

/** A package's directory under the root node_modules (root devDependencies). */
export function rootPackageDir(name: string): string {
  const dir = path.join(repoRoot(), 'node_modules', ...name.split('/'));
  if (!existsSync(path.join(dir, 'package.json'))) throw new Error(`${name} is not installed: run npm ci at the repository root`);
  return dir;
}

/** The environment for a child npm: none of the parent npm's npm_* settings (workspace, script, etc.). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  return env;
}

async function works(bin: string): Promise<boolean> {
  try {
    const { stdout } = await run(bin, ['--version'], { timeout: 30_000 });
    return /^v2[2-9]\./.test(stdout.trim()) || /^v[3-9]\d\./.test(stdout.trim());
  } catch {
    return false;
  }
}

let pending: Promise<string> | undefined;

/** The path of a Node >= 22 binary, installing it from the npm registry on first use. */
export function node22(): Promise<string> {
  pending ??= locate();
  return pending;
}

async function locate(): Promise<string> {
  const given = process.env.KUBESHARK_NODE22;
  if (given) {
    if (!(await works(given))) throw new Error(`KUBESHARK_NODE22=${given} is not a working Node >= 22`);
    return given;
  }
  if (Number(process.versions.node.split('.')[0]) >= 22) return process.execPath;

  const pkg = `node-${process.platform}-${process.arch}`;
  const cache = path.join(repoRoot(), 'node_modules', '.cache');
  const dir = path.join(cache, `${pkg}-${NODE22_VERSION}`);
  const bin = path.join(dir, 'node_modules', pkg, 'bin', 'node');
  if (existsSync(bin) && (await works(bin))) return bin;

  // Install into a fresh directory and rename it into place, so concurrent jest workers never
  // see a half-written binary (the loser of the rename race just uses the winner's copy).
  mkdirSync(cache, { recursive: true });
  const tmp = mkdtempSync(path.join(cache, `${pkg}-${NODE22_VERSION}.tmp-`));
  try {
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    await run(npm, ['install', '--prefix', tmp, '--no-save', '--no-package-lock', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error', `${pkg}@${NODE22_VERSION}`], {
      cwd: tmp,
      env: cleanEnv(),
      timeout: 300_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    if (!existsSync(bin)) {
      if (existsSync(dir) && !existsSync(bin)) rmSync(dir, { recursive: true, force: true }); // a broken leftover
      try {
        renameSync(tmp, dir);
      } catch (e) {
        if (!existsSync(bin)) throw e;
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  if (!(await works(bin))) throw new Error(`${pkg}@${NODE22_VERSION} from the npm registry did not give a working ${bin}`);
  return bin;
}
