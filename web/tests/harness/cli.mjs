// The third person of the browser tests uses the `iris` command line, as the README shows:
// `iris login`, `iris send`, `iris group send`, `iris recv`. Each command's JSON lines are
// parsed; a command that fails throws with its stderr.

import { execFile } from 'node:child_process';
import { join } from 'node:path';

export class IrisCli {
  constructor(binary, server, profileDir, name) {
    this.binary = binary;
    this.server = server;
    this.profile = join(profileDir, `${name}.json`);
  }

  run(args, timeoutMs = 60_000) {
    return new Promise((resolve, reject) => {
      execFile(this.binary, args, { timeout: timeoutMs, env: { ...process.env, IRIS_SERVER: this.server.url } }, (err, stdout, stderr) => {
        if (err) reject(new Error(`iris ${args.join(' ')} failed: ${stderr || err.message}`));
        else resolve(stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line)));
      });
    });
  }

  login(phone) {
    return this.run(['login', '--server', this.server.url, '--phone', phone, '--profile', this.profile, '--device-name', 'cli']);
  }

  send(toPhone, text) {
    // The web client is plaintext until it speaks E2E; the CLI encrypts unless told not to.
    return this.run(['send', '--plaintext', '--profile', this.profile, '--to', toPhone, text]);
  }

  groupSend(groupId, text) {
    return this.run(['group', 'send', '--plaintext', '--profile', this.profile, '--group', String(groupId), text]);
  }

  groupJoin(token) {
    return this.run(['group', 'join', '--profile', this.profile, '--token', token]);
  }

  /** Receives until `count` messages arrived (receipts and notices are printed too). */
  recv(count, timeoutS = 30) {
    return this.run(['recv', '--profile', this.profile, '--count', String(count), '--timeout', String(timeoutS)], (timeoutS + 30) * 1000);
  }
}
