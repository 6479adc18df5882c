// The web client in a real browser (Debian's Chromium, headless, driven by playwright-core)
// against the real `iris serve --dev` binary. Alice uses a desktop-sized window, Bob a
// phone-sized one, and Carol the `iris` command line. The steps run in order as one story:
// login, ticks ✓ → ✓✓ → blue, typing, an edit and a reaction, end-to-end encryption between the
// browsers and with the CLI (1:1 both ways, safety numbers, an undecryptable message, a group),
// a photo (its thumbnail shown first) and a file (encrypted media) between browsers and the CLI,
// the photo forwarded, a voice note played and one sent, a video recorded in the page sent, a
// group, a linked device (its link code approved by Alice's first browser) with sent-sync, a
// server killed and restarted mid-conversation (banner, then nothing lost or doubled), a
// malformed server event, logout. Screenshots of each step, at both sizes, go to
// target/web-artifacts/. Started by scripts/web-test.sh (`npm run test:browser`).

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { deflateSync } from 'node:zlib';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DESKTOP, launch, person, PHONE, screenshots, writeConsoles } from './harness/browser.mjs';
import { IrisCli } from './harness/cli.mjs';
import { IrisServer } from './harness/server.mjs';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const binary = process.env.IRIS_BIN ?? join(repo, 'target/debug/iris');
const artifacts = process.env.IRIS_WEB_ARTIFACTS ?? join(repo, 'target/web-artifacts');

const ALICE = '+14155550101';
const BOB = '+14155550102';
const CAROL = '+14155550103';

let work, server, browser, alice, bob, carol, aliceLaptop;

/** Polls `check` until it returns a truthy value; fails with `what` after `timeoutMs`, and with
 * what `explain` says of the page then, when given. */
async function until(what, check, timeoutMs = 15_000, explain = undefined) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      const seen = explain ? `; ${await explain().catch((e) => `(could not say: ${e.message})`)}` : '';
      throw new Error(`timed out waiting for: ${what} (last: ${last})${seen}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

const bubble = (p, text) => p.page.locator('.bubble', { hasText: text });
const tickOf = (p, text) => bubble(p, text).first().getAttribute('data-tick');
const shots = (step, ...people) => screenshots(artifacts, step, people);

/** Phone number, dev code, "Log in": a first device is then in; a companion shows a link code. */
async function enterCode(p, phone) {
  await p.page.goto('/');
  await p.page.getByLabel('Your phone number').fill(phone);
  await p.page.getByRole('button', { name: 'Send code' }).click();
  await p.page.getByText('the code is 000000').waitFor();
  await p.page.getByLabel(/The code sent to/).fill('000000');
  await p.page.getByRole('button', { name: 'Log in' }).click();
}

async function loggedIn(p) {
  await p.page.getByRole('navigation', { name: 'Chats' }).waitFor();
  await until(`${p.name} connected`, async () => (await p.page.locator('.banner').count()) === 0);
}

/** Logs in the first device of `phone` (a companion needs approval: see the linked-device test). */
async function login(p, phone) {
  await enterCode(p, phone);
  await loggedIn(p);
}

/** The chat list entry whose title is exactly `title`. */
const chatItem = (p, title) =>
  p.page.locator('.chat-item').filter({ has: p.page.locator('.chat-title', { hasText: new RegExp(`^${escape(title)}$`) }) });

/** The texts of the bubbles shown, in order (for a failure's message). */
const shownTexts = (p) => p.page.locator('.bubble > .text').evaluateAll((els) => JSON.stringify(els.map((e) => e.textContent)));

/** How many bubbles show exactly `text` (quotes of it not counted). */
const textCount = (p, text) =>
  p.page.locator('.bubble > .text').evaluateAll((els, t) => els.filter((e) => e.textContent === t).length, text);

function escape(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

async function openChat(p, title) {
  const back = p.page.getByRole('button', { name: 'Back to chats' });
  if (await back.isVisible()) await back.click(); // phone size: one pane at a time
  await chatItem(p, title).click();
  await p.page.getByRole('textbox', { name: 'Message' }).waitFor();
}

/** "New chat" by phone number; returns once that chat is open. Starting a chat asks the server
 * first (contact discovery): typing before it is open would type into the chat behind the dialog. */
async function startChat(p, phone) {
  await p.page.getByRole('button', { name: 'New chat' }).click();
  await p.page.getByLabel('Phone number').fill(phone);
  await p.page.getByRole('button', { name: 'Start chat' }).click();
  await p.page.locator(`section.conversation[aria-label="Chat with ${phone}"]`).waitFor();
}

async function send(p, text) {
  const box = p.page.getByRole('textbox', { name: 'Message' });
  await box.fill(text);
  await box.press('Enter');
}

async function messageAction(p, text, action) {
  await bubble(p, text).first().getByRole('button', { name: 'Message actions' }).click();
  await p.page.getByRole('menuitem', { name: action }).click();
}

before(async () => {
  rmSync(artifacts, { recursive: true, force: true }); // this suite's own output directory
  mkdirSync(artifacts, { recursive: true });
  work = mkdtempSync(join(tmpdir(), 'iris-web-test-'));
  server = new IrisServer(binary, join(work, 'data'), join(artifacts, 'server.log'));
  await server.start();
  browser = await launch();
  alice = await person(browser, 'alice', DESKTOP, server.url);
  bob = await person(browser, 'bob', PHONE, server.url);
  carol = new IrisCli(binary, server, work, 'carol');
});

after(async () => {
  writeConsoles(artifacts, [alice, bob, aliceLaptop].filter(Boolean));
  await browser?.close();
  await server?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('Alice and Bob log in by phone and the dev code; Carol with the CLI', async () => {
  await login(alice, ALICE);
  await login(bob, BOB);
  await carol.login(CAROL);
  await alice.page.getByText('Messages are end-to-end encrypted').first().waitFor();
  await shots('logged-in', alice, bob);
});

test('ticks go ✓ (accepted) → ✓✓ (delivered) → blue ✓✓ (read once Bob sees it)', async () => {
  // Bob leaves the page: Alice's message can only be accepted.
  await bob.page.goto('about:blank');
  await startChat(alice, BOB);
  await send(alice, 'Hello Bob');
  await until('✓ on Alice\'s message', async () => (await tickOf(alice, 'Hello Bob')) === 'sent');
  await shots('accepted', alice);

  // Bob comes back (the session survives: refresh token in storage), gets it: ✓✓.
  await bob.page.goto('/');
  await until('✓✓ on Alice\'s message', async () => (await tickOf(alice, 'Hello Bob')) === 'delivered');
  const unread = chatItem(bob, ALICE).locator('.unread');
  assert.equal(await unread.textContent(), '1');
  assert.equal(await tickOf(alice, 'Hello Bob'), 'delivered', 'not read before Bob opens the chat');
  await shots('delivered', alice, bob);

  // Bob opens the chat: the message is on screen, READ goes out, the ticks turn blue.
  await openChat(bob, ALICE);
  await until('blue ✓✓ on Alice\'s message', async () => (await tickOf(alice, 'Hello Bob')) === 'read');
  const color = await bubble(alice, 'Hello Bob').locator('.tick').evaluate((e) => getComputedStyle(e).color);
  assert.equal(color, 'rgb(52, 183, 241)', 'read ticks are blue');
  assert.equal(await unread.count(), 0, 'no unread count once read');
  await shots('read', alice, bob);
});

test('typing is shown and cleared; presence says online', async () => {
  const subtitle = alice.page.getByTestId('chat-subtitle');
  await until('Bob online for Alice', async () => (await subtitle.textContent()) === 'online');
  await bob.page.getByRole('textbox', { name: 'Message' }).pressSequentially('Hi Al', { delay: 20 });
  await until('typing… shown to Alice', async () => (await subtitle.textContent()) === 'typing…');
  await shots('typing', alice, bob);
  await bob.page.getByRole('textbox', { name: 'Message' }).fill('');
  await bob.page.getByRole('textbox', { name: 'Message' }).press('Backspace');
  await until('typing… cleared', async () => (await subtitle.textContent()) !== 'typing…', 8000);

  // Bob hides his presence: Alice no longer sees him online; then shows it again.
  await bob.page.getByRole('button', { name: 'Back to chats' }).click();
  await bob.page.getByRole('button', { name: 'Settings', exact: true }).click();
  const privacy = bob.page.getByLabel(/Who can see when I'm online/);
  await privacy.selectOption('PRESENCE_PRIVACY_NOBODY');
  await until('Bob hidden from Alice', async () => (await subtitle.textContent()) === '');
  await privacy.selectOption('PRESENCE_PRIVACY_EVERYONE');
  await until('Bob online again for Alice', async () => (await subtitle.textContent()) === 'online');
  await bob.page.keyboard.press('Escape');
  await openChat(bob, ALICE);
});

test('the keyboard is enough: open a chat with the arrow keys and Enter, type, send', async () => {
  const first = alice.page.locator('.chat-item').first();
  await first.focus();
  await alice.page.keyboard.press('ArrowDown');
  await alice.page.keyboard.press('ArrowUp');
  await alice.page.keyboard.press('Enter');
  const box = alice.page.getByRole('textbox', { name: 'Message' });
  await until('the composer has the focus', () => box.evaluate((e) => e === document.activeElement));
  await alice.page.keyboard.type('Typed without a mouse');
  await alice.page.keyboard.press('Enter');
  await bubble(bob, 'Typed without a mouse').waitFor();
});

test('a reply, an edit and a reaction reach the other side', async () => {
  await messageAction(bob, 'Hello Bob', 'Reply');
  await send(bob, 'Hi Alice');
  await until('Bob\'s reply at Alice, quoting', async () =>
    (await bubble(alice, 'Hi Alice').locator('.quote').textContent()) === 'Hello Bob');

  await messageAction(alice, 'Hello Bob', 'Edit');
  await send(alice, 'Hello Bob, edited');
  await until('the edit at Bob', async () => (await bubble(bob, 'Hello Bob, edited').locator('.edited').count()) === 1);

  await messageAction(bob, 'Hello Bob, edited', 'React 👍');
  await until('the reaction at Alice', async () =>
    (await bubble(alice, 'Hello Bob, edited').locator('.reactions').textContent()) === '👍');
  await shots('edit-and-reaction', alice, bob);
});

/** Whether a bubble carries the end-to-end lock. */
const locked = async (p, text) => (await bubble(p, text).first().locator('.lock').count()) === 1;

test('end-to-end encrypted between the browsers: every bubble locked, the same safety number on both sides', async () => {
  await openChat(alice, BOB);
  await openChat(bob, ALICE);
  for (const text of ['Hello Bob, edited', 'Hi Alice', 'Typed without a mouse']) {
    assert.ok(await locked(alice, text), `"${text}" is encrypted at Alice`);
    assert.ok(await locked(bob, text), `"${text}" is encrypted at Bob`);
  }
  assert.match(await alice.page.getByTestId('e2e-state').textContent(), /End-to-end encrypted/);
  await alice.page.getByRole('button', { name: 'Show safety number' }).click();
  await bob.page.getByRole('button', { name: 'Show safety number' }).click();
  const aliceNumber = await alice.page.getByTestId('safety-number').locator('code').textContent();
  const bobNumber = await bob.page.getByTestId('safety-number').locator('code').textContent();
  assert.match(aliceNumber, /^(\d{5} ){11}\d{5}$/);
  assert.equal(aliceNumber, bobNumber, 'both sides compute the same safety number');
  await shots('e2e-safety-number', alice, bob);
});

test('end-to-end encrypted with the CLI, both ways; the safety numbers agree; a bad ciphertext shows as undecryptable', async () => {
  await startChat(alice, CAROL);
  await send(alice, 'A secret for Carol');
  // The server took it (✓) before Carol looks: if this times out, the browser could not send
  // (Carol's keys, the connection), not the CLI that could not receive.
  await until('✓ on the message to Carol', async () =>
    ['sent', 'delivered', 'read'].includes(await tickOf(alice, 'A secret for Carol')), 30_000,
    async () => `Alice (${alice.page.url()}) shows ${await shownTexts(alice)}`);
  const lines = await carol.recv(1);
  const got = lines.find((l) => l.text === 'A secret for Carol');
  assert.ok(got, `Carol's CLI decrypted the browser's message: ${JSON.stringify(lines)}`);
  assert.equal(got.encrypted, true);

  await carol.sendEncrypted(ALICE, 'A secret for Alice, from the CLI');
  await bubble(alice, 'A secret for Alice, from the CLI').waitFor();
  assert.ok(await locked(alice, 'A secret for Alice, from the CLI'), 'shown as encrypted');

  await alice.page.getByRole('button', { name: 'Show safety number' }).click();
  const browserNumber = await alice.page.getByTestId('safety-number').locator('code').textContent();
  const keys = await carol.keys(ALICE);
  assert.equal(keys.find((l) => l.safety_number)?.safety_number, browserNumber, 'the CLI and the browser show one safety number');

  // An envelope whose sender key is not Carol's device's: refused, and said so.
  await carol.send(ALICE, JSON.stringify({ v: 1, alg: 'olm.v1', sender_key: 'bm90IGEga2V5', type: 1, body: 'AAAA' }));
  await alice.page.locator('.bubble .text.unreadable', { hasText: 'could not be decrypted' }).waitFor();
  assert.equal(await alice.page.locator('.bubble', { hasText: '"alg"' }).count(), 0, 'never shown as its JSON');
  await shots('e2e-cli', alice);
});

/** A PNG made here (96×64, a colour gradient), so the bytes are known. */
function makePng(width = 96, height = 64) {
  const crc32 = (buf) => {
    let c = ~0;
    for (const b of buf) {
      c ^= b;
      for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
    }
    return ~c >>> 0;
  };
  const chunk = (type, data) => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, 'latin1');
    data.copy(out, 8);
    out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const rows = Buffer.alloc(height * (1 + width * 3));
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) rows.set([(x * 255) / width, (y * 255) / height, 160], y * (1 + width * 3) + 1 + x * 3);
  }
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', header), chunk('IDAT', deflateSync(rows)), chunk('IEND', Buffer.alloc(0))]);
}
const PNG = makePng();

/** Half a second of a 440 Hz tone: 8 kHz mono 16-bit PCM in a WAV file. */
function makeWav() {
  const samples = 4000;
  const out = Buffer.alloc(44 + samples * 2);
  out.write('RIFF', 0);
  out.writeUInt32LE(36 + samples * 2, 4);
  out.write('WAVEfmt ', 8);
  out.writeUInt32LE(16, 16);
  out.writeUInt16LE(1, 20); // PCM
  out.writeUInt16LE(1, 22); // mono
  out.writeUInt32LE(8000, 24);
  out.writeUInt32LE(16000, 28);
  out.writeUInt16LE(2, 32);
  out.writeUInt16LE(16, 34);
  out.write('data', 36);
  out.writeUInt32LE(samples * 2, 40);
  for (let i = 0; i < samples; i++) out.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / 8000)), 44 + i * 2);
  return out;
}

test('a photo sent from one browser is shown in the other; a file from the CLI is offered as a download', async () => {
  await openChat(alice, BOB);
  await openChat(bob, ALICE);
  // Bob's download of the photo itself (its encrypted blob: the PNG, an IV and a MAC) waits,
  // so the thumbnail Alice's browser drew shows first.
  let release;
  const held = new Promise((resolve) => (release = resolve));
  await bob.page.route('**/*', async (route) => {
    const response = await route.fetch();
    const body = await response.body();
    if (body.length === PNG.length + 48) await held;
    await route.fulfill({ response, body });
  });
  await alice.page.getByRole('textbox', { name: 'Message' }).fill('A tiny photo');
  await alice.page.locator('input[type=file]').setInputFiles({ name: 'tiny.png', mimeType: 'image/png', buffer: PNG });
  const preview = bob.page.locator('.bubble', { hasText: 'A tiny photo' }).locator('img.media-thumbnail');
  await until('the thumbnail shown at Bob while the photo loads', () =>
    preview.evaluate((img) => img.complete && img.naturalWidth === 96 && img.naturalHeight === 64));
  release();
  const image = bob.page.locator('.bubble', { hasText: 'A tiny photo' }).locator('img.media-image');
  await image.waitFor();
  await until('the photo decoded at Bob', () => image.evaluate((img) => img.complete && img.naturalWidth === 96 && img.naturalHeight === 64));
  await bob.page.unrouteAll({ behavior: 'wait' });
  assert.ok(await locked(bob, 'A tiny photo'), 'the photo came encrypted');
  await until('the photo shown at Alice too', () =>
    alice.page.locator('.bubble', { hasText: 'A tiny photo' }).locator('img.media-image').evaluate((img) => img.naturalWidth === 96));
  await shots('photo', alice, bob);

  // A document from the CLI (encrypted by the SDK) arrives as a download with the same bytes.
  const doc = join(work, 'notes.txt');
  writeFileSync(doc, 'Notes from Carol\n'.repeat(100));
  await carol.sendEncrypted(ALICE, 'The notes', doc);
  await openChat(alice, CAROL);
  const download = alice.page.getByRole('button', { name: 'Download notes.txt' });
  await download.waitFor();
  const [file] = await Promise.all([alice.page.waitForEvent('download'), download.click()]);
  const saved = join(work, 'downloaded.txt');
  await file.saveAs(saved);
  assert.equal(readFileSync(saved, 'utf8'), readFileSync(doc, 'utf8'), 'decrypted to the same bytes');

  // And the browser's photo, sent to the CLI, is saved there decrypted.
  await alice.page.locator('input[type=file]').setInputFiles({ name: 'tiny.png', mimeType: 'image/png', buffer: PNG });
  const dir = join(work, 'carol-media');
  const lines = await carol.recv(1, 30, dir);
  const photo = lines.find((l) => Array.isArray(l.media) && l.media.length === 1);
  assert.ok(photo, `Carol got the photo: ${JSON.stringify(lines)}`);
  assert.deepEqual(readFileSync(photo.media[0].path), PNG, 'the CLI decrypted the browser\'s photo to the same bytes');
  assert.match(photo.media[0].description, /96×64/, 'the browser measured the photo');
  assert.match(photo.media[0].thumbnail_id ?? '', /^[0-9a-f]{64}$/, 'and sent a thumbnail beside it');
  await shots('file-from-cli', alice);

  // Alice forwards the photo she sent Bob to Carol: not uploaded again, the same blob, sealed anew.
  await openChat(alice, BOB);
  await messageAction(alice, 'A tiny photo', 'Forward');
  const dialog = alice.page.getByRole('dialog');
  await dialog.getByLabel(CAROL).check();
  await dialog.getByRole('button', { name: 'Forward' }).click();
  const forwardedDir = join(work, 'carol-forwarded');
  const copies = (await carol.recv(1, 30, forwardedDir)).filter((l) => l.forwarded && Array.isArray(l.media));
  assert.equal(copies.length, 1, `Carol got the forwarded photo: ${JSON.stringify(copies)}`);
  assert.equal(copies[0].text, 'A tiny photo', 'with its caption');
  assert.deepEqual(readFileSync(copies[0].media[0].path), PNG, 'the forwarded photo decrypts to the same bytes');
  await openChat(alice, CAROL);
  await bubble(alice, 'A tiny photo').filter({ hasText: 'Forwarded' }).locator('img.media-image').waitFor();

  // A voice note from the CLI plays in the browser once asked for: decrypted, then decoded.
  const voice = join(work, 'hello.wav');
  writeFileSync(voice, makeWav());
  await carol.sendEncrypted(ALICE, 'Listen', voice);
  const play = alice.page.getByRole('button', { name: /^Play Voice note/ });
  await play.waitFor();
  await play.click();
  const audio = bubble(alice, 'Listen').locator('audio.media-audio');
  await audio.waitFor();
  await until('the voice note decoded: 0.5 s', () => audio.evaluate((a) => a.readyState >= 1 && Math.abs(a.duration - 0.5) < 0.01), 15_000,
    () => audio.evaluate((a) => JSON.stringify({ src: a.src, readyState: a.readyState, networkState: a.networkState, duration: a.duration, error: a.error && [a.error.code, a.error.message], canPlay: a.canPlayType('audio/wav') })));
  await shots('voice-note', alice);

  // And a voice note picked in the browser goes as one (sniffed, its length read by the
  // browser's player), not as a document: the CLI saves the same bytes and describes it.
  await alice.page.getByRole('textbox', { name: 'Message' }).fill('Hear this');
  await alice.page.locator('input[type=file]').setInputFiles({ name: 'hello.wav', mimeType: 'audio/wav', buffer: makeWav() });
  const heard = (await carol.recv(1, 30, join(work, 'carol-voice'))).find((l) => l.text === 'Hear this');
  assert.ok(heard, 'Carol got the voice note');
  assert.equal(heard.media[0].mime, 'audio/wav');
  assert.match(heard.media[0].description, /^\[voice 0\.5 s /, 'a voice note of half a second');
  assert.deepEqual(readFileSync(heard.media[0].path), makeWav(), 'decrypted to the same bytes');
  await bubble(alice, 'Hear this').getByRole('button', { name: /^Play Voice note · 0\.5 s/ }).waitFor();

  // A video recorded in the page (a WebM from MediaRecorder) goes as a video with its size and
  // a thumbnail of its first frame: the CLI describes it, and the page shows the frame on its
  // Play button.
  const webm = Buffer.from(await alice.page.evaluate(async () => {
    const canvas = document.createElement('canvas');
    [canvas.width, canvas.height] = [160, 120];
    const g = canvas.getContext('2d');
    const recorder = new MediaRecorder(canvas.captureStream(25), { mimeType: 'video/webm' });
    const chunks = [];
    recorder.ondataavailable = (e) => chunks.push(e.data);
    const stopped = new Promise((resolve) => (recorder.onstop = resolve));
    recorder.start();
    for (let i = 0; i < 15; i++) {
      g.fillStyle = `hsl(${i * 24}, 80%, 50%)`;
      g.fillRect(0, 0, 160, 120);
      await new Promise((resolve) => setTimeout(resolve, 40));
    }
    recorder.stop();
    await stopped;
    return [...new Uint8Array(await new Blob(chunks).arrayBuffer())];
  }));
  await alice.page.getByRole('textbox', { name: 'Message' }).fill('Watch this');
  await alice.page.locator('input[type=file]').setInputFiles({ name: 'clip.webm', mimeType: 'video/webm', buffer: webm });
  const watched = (await carol.recv(1, 30, join(work, 'carol-video'))).find((l) => l.text === 'Watch this');
  assert.ok(watched, 'Carol got the video');
  assert.equal(watched.media[0].mime, 'video/webm');
  assert.match(watched.media[0].description, /^\[video 160×120 /, 'with its pixel size');
  assert.match(watched.media[0].thumbnail_id ?? '', /^[0-9a-f]{64}$/, 'and a thumbnail of its first frame');
  assert.deepEqual(readFileSync(watched.media[0].path), webm, 'decrypted to the same bytes');
  await until('the first frame on the Play button', () =>
    bubble(alice, 'Watch this').locator('img.media-poster').evaluate((img) => img.complete && img.naturalWidth === 160 && img.naturalHeight === 120));
  await shots('video', alice);
});

let groupId;
test('a group message reaches everyone, the CLI member too, and back', async () => {
  await alice.page.getByRole('button', { name: 'New group' }).click();
  await alice.page.getByLabel('Group name').fill('Trio');
  await alice.page.getByLabel(/Members' phone numbers/).fill(`${BOB}, ${CAROL}`);
  await alice.page.getByRole('button', { name: 'Create group' }).click();
  const key = await until('the group open at Alice', async () => {
    const open = await alice.page.locator('.chat-item.open').getAttribute('data-chat');
    return open?.startsWith('g:') && open;
  });
  groupId = key.replace('g:', '');
  await send(alice, 'Hello Trio');
  await until('the group message accepted', async () => (await tickOf(alice, 'Hello Trio')) !== 'pending');

  const lines = await carol.recv(1);
  const message = lines.find((l) => l.text === 'Hello Trio');
  assert.ok(message, `Carol got the group message: ${JSON.stringify(lines)}`);
  assert.equal(String(message.group_id), groupId);
  assert.equal(message.encrypted, true, 'the CLI decrypted the group message (Megolm)');
  await openChat(bob, 'Trio');
  await bubble(bob, 'Hello Trio').waitFor();
  assert.ok(await locked(bob, 'Hello Trio'), 'encrypted at Bob too');

  // An encrypted group message from the CLI: both browsers decrypt it.
  await carol.groupSendEncrypted(groupId, 'Carol, encrypted to the group');
  await bubble(alice, 'Carol, encrypted to the group').waitFor();
  await bubble(bob, 'Carol, encrypted to the group').waitFor();
  assert.ok(await locked(alice, 'Carol, encrypted to the group'));
  assert.ok(await locked(bob, 'Carol, encrypted to the group'));
  await shots('group-encrypted', alice, bob);

  await carol.groupSend(groupId, 'Carol here, from the CLI');
  await bubble(alice, 'Carol here, from the CLI').waitFor();
  await bubble(bob, 'Carol here, from the CLI').waitFor();
  await until('delivered to all: ✓✓', async () => ['delivered', 'read'].includes(await tickOf(alice, 'Hello Trio')));

  await carol.send(ALICE, 'Psst, Alice');
  await chatItem(alice, CAROL).waitFor();
  await shots('group', alice, bob);

  // Alice forwards Bob's message to Carol and to the group, then deletes hers for everyone.
  await openChat(alice, BOB);
  await messageAction(alice, 'Hi Alice', 'Forward');
  const dialog = alice.page.getByRole('dialog');
  await dialog.getByLabel(CAROL).check();
  await dialog.getByLabel('Trio').check();
  await dialog.getByRole('button', { name: 'Forward' }).click();
  const copies = (await carol.recv(2)).filter((l) => l.text === 'Hi Alice');
  assert.equal(copies.length, 2, `Carol got one copy in the 1:1 chat and one in the group: ${JSON.stringify(copies)}`);
  assert.ok(copies.every((l) => l.forwarded));
  await bubble(bob, 'Hi Alice').filter({ hasText: 'Forwarded' }).waitFor();

  await openChat(alice, 'Trio');
  await messageAction(alice, 'Hello Trio', 'Delete for everyone');
  await bubble(bob, 'This message was deleted').waitFor();
  assert.equal(await textCount(bob, 'Hello Trio'), 0);
});

test('groups: announcement mode, roles, removal and an invite link approved by an admin', async () => {
  await openChat(alice, 'Trio');
  await openChat(bob, 'Trio');
  await alice.page.getByRole('button', { name: 'Group info' }).click();
  const panel = alice.page.getByRole('dialog');
  const member = (phone) => panel.locator('.members li', { hasText: phone });
  await until('the roster with roles', async () => (await member(ALICE).locator('.role').textContent()) === 'creator');

  await panel.getByLabel(/Only admins can send/).check();
  await bob.page.getByText('Only admins can send messages to this group.').waitFor();
  await shots('announcement-mode', alice, bob);
  await member(BOB).getByRole('button', { name: 'Make admin' }).click();
  await until('Bob is an admin', async () => (await member(BOB).locator('.role').textContent()) === 'admin');
  await bob.page.getByRole('textbox', { name: 'Message' }).waitFor(); // admins may send
  await panel.getByLabel(/Only admins can send/).uncheck();

  await member(CAROL).getByRole('button', { name: 'Remove' }).click();
  await until('Carol removed', async () => (await member(CAROL).count()) === 0);
  await panel.getByLabel(/waits for an admin's approval/).check();
  await panel.getByRole('button', { name: 'Create invite link' }).click();
  const link = await panel.getByLabel('Invite link').inputValue();
  const token = /#join=([A-Za-z0-9_-]+)$/.exec(link)?.[1];
  assert.ok(token, `an invite link: ${link}`);
  await carol.groupJoin(token);
  // Join approval is on: Carol asks, and Alice lets her in from the panel.
  const approve = panel.getByRole('button', { name: `Approve ${CAROL}` });
  await approve.waitFor();
  assert.equal(await member(CAROL).count(), 0, 'not a member before the approval');
  await shots('join-request', alice);
  await approve.click();
  await until('Carol back through the link', async () => (await member(CAROL).count()) === 1);
  assert.equal(await approve.count(), 0, 'the request is answered');
  await panel.getByLabel(/waits for an admin's approval/).uncheck();
  await shots('group-info', alice);
  await alice.page.keyboard.press('Escape');
  await bob.page.locator('.notice-line', { hasText: 'removed' }).first().waitFor(); // the changes reach the members
});

test('a linked device of Alice sees what her laptop sends (sent-sync), then logs out', async () => {
  aliceLaptop = await person(browser, 'alice-second-device', DESKTOP, server.url);
  await enterCode(aliceLaptop, ALICE);
  // A companion waits for the primary's approval: the new browser shows its link code...
  await aliceLaptop.page.getByText('Approve this browser on your phone').waitFor();
  const code = (await aliceLaptop.page.locator('.link-code').textContent()).trim();
  assert.match(code, /^[A-Z0-9]{4}-[A-Z0-9]{4}$/, 'a link code like K7QF-M2XD');
  // ...and its QR code, for the primary to scan.
  const qr = aliceLaptop.page.getByRole('img', { name: `QR code of link code ${code}` });
  await qr.waitFor();
  assert.ok((await qr.locator('path').getAttribute('d')).length > 100, 'a drawn QR code');
  assert.equal(await aliceLaptop.page.getByRole('navigation', { name: 'Chats' }).count(), 0, 'not logged in yet');
  await shots('link-code', aliceLaptop);
  // ...and Alice's first browser (the primary) approves it in Settings.
  await alice.page.getByRole('button', { name: 'Settings', exact: true }).click();
  await alice.page.getByText('Devices waiting for approval').waitFor();
  await alice.page.getByRole('button', { name: `Approve ${code}` }).click();
  await until('the approved link gone from the list', async () =>
    (await alice.page.getByRole('button', { name: `Approve ${code}` }).count()) === 0);
  await alice.page.keyboard.press('Escape');
  await loggedIn(aliceLaptop);
  await openChat(alice, BOB);
  await send(alice, 'Sent from my first device');
  await openChat(aliceLaptop, BOB);
  const copy = bubble(aliceLaptop, 'Sent from my first device');
  await copy.waitFor();
  assert.match(await copy.getAttribute('class'), /mine/, 'shown as my own message');
  await shots('linked-device', aliceLaptop);

  await aliceLaptop.page.getByRole('button', { name: 'Settings', exact: true }).click();
  await aliceLaptop.page.getByText('· this browser').waitFor();
  await aliceLaptop.page.getByRole('button', { name: 'Log out of this browser' }).click();
  await aliceLaptop.page.getByLabel('Your phone number').waitFor();
  await aliceLaptop.page.reload();
  await aliceLaptop.page.getByLabel('Your phone number').waitFor(); // still logged out after a reload
  await aliceLaptop.context.close();
});

test('a server restart mid-conversation: banner, then nothing lost or doubled', async () => {
  await openChat(bob, ALICE);
  await server.kill();
  await alice.page.locator('.banner.offline').waitFor();
  await bob.page.locator('.banner.offline').waitFor();
  await send(alice, 'Sent while the server was down');
  assert.equal(await tickOf(alice, 'Sent while the server was down'), 'pending');
  await shots('server-down', alice, bob);

  await server.start();
  await until('banner gone at Alice', async () => (await alice.page.locator('.banner').count()) === 0, 30_000);
  await until('banner gone at Bob', async () => (await bob.page.locator('.banner').count()) === 0, 30_000);
  await bubble(bob, 'Sent while the server was down').waitFor();
  await until('the queued message read', async () => (await tickOf(alice, 'Sent while the server was down')) === 'read');

  // A reload on both sides: the history comes back from the browser's storage, once.
  await bob.page.reload();
  await alice.page.reload();
  await bubble(bob, 'Sent while the server was down').waitFor();
  for (const text of ['Hello Bob, edited', 'Hi Alice', 'Sent from my first device', 'Sent while the server was down']) {
    // The history renders from storage after the first bubble: wait for each before counting.
    await until(`"${text}" back at Bob and Alice`, async () => (await textCount(bob, text)) >= 1 && (await textCount(alice, text)) >= 1,
      15_000, async () => `Bob (${bob.page.url()}) shows ${await shownTexts(bob)}; Alice (${alice.page.url()}) shows ${await shownTexts(alice)}`);
    assert.equal(await textCount(bob, text), 1, `Bob sees "${text}" once`);
    assert.equal(await textCount(alice, text), 1, `Alice sees "${text}" once`);
  }
  await shots('after-restart', alice, bob);
});

test('a malformed server event does not break the page', async () => {
  let socket;
  await bob.page.routeWebSocket(/\/v1\/ws$/, (ws) => {
    ws.connectToServer(); // everything else is passed through as it is
    socket = ws;
  });
  await bob.page.reload();
  await until('Bob connected through the route', async () => socket && (await bob.page.locator('.banner').count()) === 0);
  for (const garbage of [
    'this is not JSON',
    '{"events":"not a list"}',
    '[1,2,3]',
    '{"events":[null,7,{"delivery":{"items":[{"seq":"not a number","message":{}}, null]}},{"typing":{"fromAccountId":{}}},{"presence":{"accountId":"1","online":"yes"}}]}',
  ]) {
    socket.send(garbage);
  }
  await bob.page.getByText('Ignored a malformed message from the server.').waitFor();
  await send(alice, 'Still working after the garbage');
  await bubble(bob, 'Still working after the garbage').waitFor();
  await send(bob, 'And so is Bob');
  await bubble(alice, 'And so is Bob').waitFor();
  await shots('malformed-event', alice, bob);
  await bob.page.unrouteAll({ behavior: 'ignoreErrors' });
});

test('a second tab of the same device takes over; "Use here" takes it back', async () => {
  const tab = await bob.context.newPage();
  tab.on('pageerror', (e) => bob.errors.push(`bob's second tab: ${e.message}`));
  await tab.goto('/');
  await bob.page.getByText('Iris is open in another window or tab.').waitFor();
  await until('the second tab connected', async () => (await tab.locator('.banner').count()) === 0);
  await shots('second-tab', bob);
  await bob.page.getByRole('button', { name: 'Use here' }).click();
  await tab.getByText('Iris is open in another window or tab.').waitFor();
  await until('the first tab connected again', async () => (await bob.page.locator('.banner').count()) === 0);
  await tab.close();
  await send(alice, 'After the tabs');
  await bubble(bob, 'After the tabs').waitFor();
});

test('Bob logs out; no page ever threw', async () => {
  await bob.page.reload();
  const back = bob.page.getByRole('button', { name: 'Back to chats' });
  if (await back.isVisible()) await back.click();
  await bob.page.getByRole('button', { name: 'Settings', exact: true }).click();
  await bob.page.getByRole('button', { name: 'Log out of this browser' }).click();
  await bob.page.getByLabel('Your phone number').waitFor();
  await shots('logged-out', bob);
  assert.deepEqual([...alice.errors, ...bob.errors], [], 'uncaught errors in the pages');
  const unnamed = await alice.page.locator('button').evaluateAll((buttons) =>
    buttons.filter((b) => !(b.getAttribute('aria-label') || b.textContent.trim())).map((b) => b.outerHTML));
  assert.deepEqual(unnamed, [], 'every button has a name a screen reader can say');
});
