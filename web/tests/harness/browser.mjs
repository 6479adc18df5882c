// Debian's Chromium (/usr/bin/chromium, installed by scripts/web-test.sh) driven by
// playwright-core: headless, with the flags this machine needs (no sandbox as root, no
// background networking: the network is closed). Two window sizes, and screenshots of each
// step written to the artifacts directory.

import { chromium } from 'playwright-core';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1280, height: 800 };

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** A person: a browser context of one window size, one page, its errors collected, and its
 * console kept (timestamped) for the log a failed run prints. */
export async function person(browser, name, viewport, baseUrl) {
  const context = await browser.newContext({ viewport, baseURL: baseUrl, locale: 'en-GB', timezoneId: 'UTC' });
  const page = await context.newPage();
  const errors = [];
  const consoleLines = [];
  page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
  page.on('console', (m) => {
    consoleLines.push(`${new Date().toISOString()} ${m.type()}: ${m.text()}`);
  });
  page.on('dialog', (d) => d.accept());
  return { name, viewport, context, page, errors, consoleLines, size: viewport === PHONE ? 'phone' : 'desktop' };
}

/** Writes each person's kept console lines to `console-<name>.log` in `dir`. */
export function writeConsoles(dir, people) {
  for (const p of people) writeFileSync(join(dir, `console-${p.name}.log`), p.consoleLines.join('\n') + '\n');
}

let shot = 0;
/** Screenshots of each person's page for one step: `NN-step-name-size.png`. */
export async function screenshots(dir, step, people) {
  shot += 1;
  const n = String(shot).padStart(2, '0');
  for (const p of people) {
    await p.page.screenshot({ path: join(dir, `${n}-${step}-${p.name}-${p.size}.png`) });
  }
}
