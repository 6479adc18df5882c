// Starts the real `iris serve --dev` binary for the browser tests: loopback only, ephemeral
// ports (read from the line it prints once listening), a temporary data directory; kill -9 and
// restart on the same ports and data; stop. It only ever signals the process it started.

import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';

const START_TIMEOUT_MS = 30_000;

export class IrisServer {
  constructor(binary, dataDir, logPath) {
    this.binary = binary;
    this.dataDir = dataDir;
    this.log = createWriteStream(logPath, { flags: 'a' });
    this.tcp = '127.0.0.1:0';
    this.http = '127.0.0.1:0';
    this.child = undefined;
  }

  /** Base URL of the HTTP port (the page, the API, the WebSocket). */
  get url() {
    return `http://${this.http}`;
  }

  async start() {
    const args = ['serve', '--dev', '--data-dir', this.dataDir, '--listen', this.tcp, '--http', this.http];
    const child = spawn(this.binary, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, IRIS_LOG: 'info' } });
    this.child = child;
    child.stderr.pipe(this.log, { end: false });
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    child.exitedPromise = exited;
    const listening = new Promise((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (chunk) => {
        out += chunk;
        this.log.write(chunk);
        const m = /iris listening: tcp=(\S+) http=http:\/\/(\S+)/.exec(out);
        if (m) resolve(m);
      });
      exited.then(({ code, signal }) => reject(new Error(`iris serve exited (${code ?? signal}) before listening; see its log`)));
      setTimeout(() => reject(new Error('iris serve did not start listening in time')), START_TIMEOUT_MS);
    });
    const [, tcp, http] = await listening;
    // Pin the ports, so a restart comes back where the browsers look for it.
    this.tcp = tcp;
    this.http = http;
  }

  /** kill -9: no goodbye to the clients, nothing flushed beyond what was acknowledged. */
  async kill() {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    child.kill('SIGKILL');
    await child.exitedPromise;
  }

  async restart() {
    await this.kill();
    await this.start();
  }

  /** SIGTERM (graceful), then SIGKILL if it has not exited after 10 s. */
  async stop() {
    const child = this.child;
    this.child = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await child.exitedPromise;
      clearTimeout(timer);
    }
    this.log.end();
  }
}
