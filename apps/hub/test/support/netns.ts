import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/**
 * Network namespaces standing in for cluster nodes: a bridge in the root namespace and one
 * namespace per node joined to it by a veth pair, all on a private /24 picked at random and
 * unused on this machine. Everything is named after the owning process and a random tag, so a
 * run never touches another run's (or anyone else's) interfaces, and leftovers of crashed runs
 * are recognised (namespace names and link aliases carry the owner's pid; the owner is gone)
 * and removed.
 *
 * Processes started here run in their own process group (`detached`), so killing the group
 * also ends their children (the worker's tcpdump).
 */

/** `ksnet-<owner pid>-<tag>-n<i>`: the owner pid says whether a namespace is a leftover. */
const NS_NAME = /^ksnet-(\d+)-([0-9a-f]{6})-n(\d+)$/;
const bridgeName = (tag: string): string => `ksbr${tag}`;
/** Root-namespace end of node i's veth pair (at most 15 characters). */
const hostVeth = (tag: string, i: number): string => `ksv${tag}h${i}`;
/** Namespace end: the interface the node's worker captures on. */
const nodeVeth = (tag: string, i: number): string => `ksv${tag}n${i}`;

/** What this machine lacks to build the topology and capture on it, or undefined. */
export function missingPrerequisites(): string | undefined {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root');
  if (spawnSync('ip', ['-V']).status !== 0) missing.push('the ip command (apt-get install iproute2)');
  if (spawnSync('tcpdump', ['--version']).status !== 0) missing.push('tcpdump (apt-get install tcpdump)');
  return missing.length ? missing.join(', ') : undefined;
}

function run(args: string[], allowFailure = false): string {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0 && !allowFailure) throw new Error(`ip ${args.join(' ')} failed: ${(r.stderr || r.error?.message || '').trim()}`);
  return r.stdout ?? '';
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

function killNamespacePids(ns: string): void {
  for (const pid of run(['netns', 'pids', ns], true).split(/\s+/).filter(Boolean).map(Number)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** The alias every link of a run carries, naming its owner (interface names are too short for it). */
const ALIAS = /^kubeshark-netns-test owner=(\d+) tag=([0-9a-f]{6})$/;
const alias = (tag: string): string => `kubeshark-netns-test owner=${process.pid} tag=${tag}`;

/** Removes the namespaces, bridges and veths of earlier runs whose owning process no longer exists. */
export function removeLeftovers(): string[] {
  const removed: string[] = [];
  for (const line of run(['netns', 'list'], true).split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = NS_NAME.exec(name);
    if (!m || alive(Number(m[1]))) continue;
    killNamespacePids(name);
    run(['netns', 'del', name], true);
    removed.push(name);
  }
  const links = JSON.parse(run(['-j', 'link', 'show'], true) || '[]') as { ifname: string; ifalias?: string }[];
  for (const l of links) {
    const m = ALIAS.exec(l.ifalias ?? '');
    if (!m || alive(Number(m[1]))) continue;
    run(['link', 'del', l.ifname], true);
    removed.push(l.ifname);
  }
  return removed;
}

export interface NetnsNode {
  /** 1-based. */
  index: number;
  ns: string;
  /** The interface inside the namespace, holding `ip`. */
  iface: string;
  ip: string;
}

/** The bridge, its address and the node namespaces of one run. */
export class NetnsCluster {
  readonly nodes: NetnsNode[];
  readonly bridge: string;
  readonly bridgeIp: string;
  private readonly tag: string;
  private readonly groups = new Set<number>();
  private destroyed = false;

  private constructor(tag: string, subnet: number, count: number) {
    this.tag = tag;
    this.bridge = bridgeName(tag);
    this.bridgeIp = `10.213.${subnet}.1`;
    this.nodes = Array.from({ length: count }, (_, k) => ({
      index: k + 1,
      ns: `ksnet-${process.pid}-${tag}-n${k + 1}`,
      iface: nodeVeth(tag, k + 1),
      ip: `10.213.${subnet}.${11 + k}`,
    }));
  }

  /**
   * Builds the bridge and `count` namespaces on a 10.213.x.0/24 no route on this machine uses.
   * On failure whatever was made is removed before the error is thrown.
   */
  static create(count: number): NetnsCluster {
    const used = run(['-4', 'route', 'show'], true);
    const free = Array.from({ length: 256 }, (_, i) => i).filter((i) => !used.includes(`10.213.${i}.`));
    if (free.length === 0) throw new Error('no free 10.213.x.0/24 subnet on this machine');
    const subnet = free[randomBytes(1)[0]! % free.length]!;
    const cluster = new NetnsCluster(randomBytes(3).toString('hex'), subnet, count);
    process.on('exit', cluster.onExit);
    try {
      run(['link', 'add', cluster.bridge, 'type', 'bridge']);
      run(['link', 'set', 'dev', cluster.bridge, 'alias', alias(cluster.tag)]);
      run(['addr', 'add', `${cluster.bridgeIp}/24`, 'dev', cluster.bridge]);
      run(['link', 'set', cluster.bridge, 'up']);
      for (const n of cluster.nodes) {
        const host = hostVeth(cluster.tag, n.index);
        run(['netns', 'add', n.ns]);
        run(['link', 'add', host, 'type', 'veth', 'peer', 'name', n.iface]);
        run(['link', 'set', 'dev', host, 'alias', alias(cluster.tag)]);
        run(['link', 'set', n.iface, 'netns', n.ns]);
        run(['link', 'set', host, 'master', cluster.bridge]);
        run(['link', 'set', host, 'up']);
        run(['-n', n.ns, 'addr', 'add', `${n.ip}/24`, 'dev', n.iface]);
        run(['-n', n.ns, 'link', 'set', n.iface, 'up']);
        run(['-n', n.ns, 'link', 'set', 'lo', 'up']);
      }
    } catch (err) {
      cluster.destroy();
      throw err;
    }
    return cluster;
  }

  /** Starts `command args` inside node `n`'s namespace, in a process group of its own. */
  spawnIn(n: NetnsNode, command: string, args: string[]): ChildProcess {
    return this.track(spawn('ip', ['netns', 'exec', n.ns, command, ...args], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  /** Starts `command args` in the root namespace, in a process group of its own. */
  spawnOutside(command: string, args: string[]): ChildProcess {
    return this.track(spawn(command, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  /** Sends `signal` to the process group of `child` (the process and everything it started). */
  signal(child: ChildProcess, signal: NodeJS.Signals): void {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, signal);
    } catch {
      // the group is gone
    }
    if (signal === 'SIGKILL') this.groups.delete(child.pid);
  }

  /** Kills every process started here, then removes the namespaces, veths and the bridge. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    process.removeListener('exit', this.onExit);
    for (const pid of this.groups) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // the group is gone
      }
    }
    this.groups.clear();
    for (const n of this.nodes) {
      // Anything still inside (started by someone else's mistake) would keep the namespace alive.
      killNamespacePids(n.ns);
      run(['netns', 'del', n.ns], true);
      run(['link', 'del', hostVeth(this.tag, n.index)], true);
    }
    run(['link', 'del', this.bridge], true);
  }

  /** What is left of this run in the system (empty after `destroy`). */
  remains(): string[] {
    const names = run(['netns', 'list'], true)
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '');
    const links = run(['-o', 'link', 'show'], true);
    return [...this.nodes.map((n) => n.ns).filter((ns) => names.includes(ns)), ...(links.includes(`ksv${this.tag}`) || links.includes(this.bridge) ? [`links of ${this.tag}`] : [])];
  }

  private readonly onExit = (): void => this.destroy();

  private track(child: ChildProcess): ChildProcess {
    if (child.pid !== undefined) this.groups.add(child.pid);
    child.on('exit', () => child.pid !== undefined && this.groups.delete(child.pid));
    return child;
  }
}

/**
 * Resolves with the first stdout line of `child` that `match` accepts; rejects when the process
 * ends first (with its stderr) or after `ms`.
 */
export function waitForLine<T>(child: ChildProcess, what: string, match: (line: string) => T | undefined, ms = 15_000): Promise<T> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    let stderr = '';
    const timer = setTimeout(() => finish(new Error(`timed out after ${ms} ms waiting for ${what}; stderr: ${stderr.trim()}`)), ms);
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString('utf8');
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        const v = match(line);
        if (v !== undefined) {
          finish(undefined, v);
          return;
        }
      }
    };
    const onErr = (chunk: Buffer): void => {
      stderr += chunk.toString('utf8');
    };
    // 'close', not 'exit': stdout may still hold the line when the process has exited.
    const onClose = (code: number | null, signal: string | null): void => finish(new Error(`${what}: the process exited (${signal ?? `code ${code}`}) first; stderr: ${stderr.trim()}`));
    function finish(err: Error | undefined, v?: T): void {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onErr);
      child.off('close', onClose);
      if (err) reject(err);
      else resolve(v as T);
    }
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onErr);
    child.on('close', onClose);
  });
}

/** Calls `onLine` with every JSON object line a long-running process prints (the services' request logs). */
export function onJsonLines<T>(child: ChildProcess, onLine: (value: T) => void): void {
  let buffered = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (line.startsWith('{')) onLine(JSON.parse(line) as T);
    }
  });
}
