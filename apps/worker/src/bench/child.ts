import { fork } from 'node:child_process';

/**
 * Runs one benchmark mode in a child process (so one mode's JIT state and garbage do not skew
 * the next) and resolves with the report the child sends over IPC before exiting.
 */
export function runChild<R>(script: string, args: string[], what: string): Promise<R> {
  return new Promise((resolve, reject) => {
    const proc = fork(script, args, {
      execArgv: [...process.execArgv, '--expose-gc'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let report: R | undefined;
    proc.on('message', (m) => {
      report = m as R;
    });
    proc.on('error', reject);
    proc.on('exit', (code) => {
      if (report !== undefined && code === 0) resolve(report);
      else reject(new Error(`${what} exited with ${code}`));
    });
  });
}
