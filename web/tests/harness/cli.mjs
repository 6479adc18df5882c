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

  /** A plaintext send (`--plaintext`): the browser reads it as it is. */
  send(toPhone, text) {
    return this.run(['send', '--plaintext', '--profile', this.profile, '--to', toPhone, text]);
  }

  /** An end-to-end encrypted send (the CLI's default), optionally of a file as media. */
  sendEncrypted(toPhone, text, file) {
    return this.run(['send', '--profile', this.profile, '--to', toPhone, ...(file ? ['--file', file] : []), text]);
  }

  groupSend(groupId, text) {
    return this.run(['group', 'send', '--plaintext', '--profile', this.profile, '--group', String(groupId), text]);
  }

  groupSendEncrypted(groupId, text) {
    return this.run(['group', 'send', '--profile', this.profile, '--group', String(groupId), text]);
  }

  /** `iris keys --peer`: this device's keys and the safety number with `phone`. */
  keys(peerPhone) {
    return this.run(['keys', '--profile', this.profile, '--peer', peerPhone]);
  }

  groupJoin(token) {
    return this.run(['group', 'join', '--profile', this.profile, '--token', token]);
  }

  /** Receives until `count` messages arrived (receipts and notices are printed too). */
  recv(count, timeoutS = 30, saveDir) {
    const save = saveDir ? ['--save-dir', saveDir] : [];
    return this.run(['recv', '--profile', this.profile, '--count', String(count), '--timeout', String(timeoutS), ...save], (timeoutS + 30) * 1000);
  }
}
