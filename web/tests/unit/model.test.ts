// Unit tests of the client's state (src/model.ts), the payload codec (src/crypto.ts), media
// (src/media.ts: protobuf, encryption), safety numbers (src/e2e.ts) and the reconnect delays
// (src/backoff.ts) and the link code's QR code (src/ui/link_qr.tsx): no browser, no server. Bundled by `build.mjs --tests`.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffDelayMs } from '../../src/backoff';
import type { Opened } from '../../src/crypto';
import { base64ToBytes, base64ToText, bytesToBase64, parseExact, textToBase64 } from '../../src/encoding';
import { safetyNumber, signed } from '../../src/e2e';
import { decodeMediaMessage, decryptMedia, encodeMediaMessage, encryptMedia, sniff, type MediaMessage } from '../../src/media';
import * as model from '../../src/model';
import type { InboxItem } from '../../src/proto';
import { qrPath } from '../../src/ui/link_qr';

const ME = '1001';
const BOB = '1002';
const text = (t: string): Opened => ({ kind: 'text', text: t, encrypted: false });
const fromBob = (seq: number, id: string, body = 'hi'): [InboxItem, Opened] => [
  { seq: String(seq), serverMsgId: id, serverTsMs: String(1000 + seq), message: { fromAccountId: BOB, fromPhone: '+2', toAccountId: ME, payload: textToBase64(body) } },
  text(body),
];

test('a message redelivered (same server id, or at or below the cursor) is shown once', () => {
  const state = model.emptyState();
  model.applyInboxItem(state, ...withMe(fromBob(1, '77')));
  model.applyInboxItem(state, ...withMe(fromBob(1, '77'))); // same seq: below the cursor
  model.applyInboxItem(state, ...withMe(fromBob(2, '77'))); // new seq, same message (a resend)
  const chat = state.chats[model.directKey(BOB)];
  assert.equal(chat.messages.length, 1);
  assert.equal(state.cursor, '2');
  assert.equal(model.unreadCount(chat), 1);
});

test('ticks only go up: sent → delivered → read, never back', () => {
  const state = model.emptyState();
  model.ensureDirect(state, BOB, '+2');
  model.addOutgoing(state, { clientMsgId: 'c1', chatKey: model.directKey(BOB), text: 'yo' }, { accountId: ME, phone: '+1' }, 5);
  const m = state.chats[model.directKey(BOB)].messages[0];
  assert.equal(m.tick, 'pending');
  model.markAccepted(state, model.directKey(BOB), 'c1', '90', '100');
  assert.deepEqual([m.tick, m.id, state.outbox.length], ['sent', '90', 0]);
  const receipt = (seq: number, type: string): InboxItem => ({ seq: String(seq), receipt: { type, fromAccountId: BOB, peerAccountId: BOB, serverMsgIds: ['90'] } });
  model.applyInboxItem(state, receipt(1, 'RECEIPT_TYPE_READ'), ME);
  model.applyInboxItem(state, receipt(2, 'RECEIPT_TYPE_DELIVERED'), ME);
  assert.equal(m.tick, 'read');
});

test('a READ from my other device marks the message seen here, without sending READ again', () => {
  const state = model.emptyState();
  model.applyInboxItem(state, ...withMe(fromBob(1, '77')));
  model.applyInboxItem(state, { seq: '2', receipt: { type: 'RECEIPT_TYPE_READ', fromAccountId: ME, peerAccountId: BOB, serverMsgIds: ['77'] } }, ME);
  const m = state.chats[model.directKey(BOB)].messages[0];
  assert.deepEqual([m.seen, m.readReported], [true, true]);
});

test('edits only by the sender; a reaction replaces the earlier one and an empty one removes it; a deletion wins', () => {
  const state = model.emptyState();
  model.applyInboxItem(state, ...withMe(fromBob(1, '77', 'first')));
  const chat = state.chats[model.directKey(BOB)];
  const act = (type: string, from: string, extra: Partial<{ text: string; emoji: string }> = {}) =>
    model.applyAction(chat, { type: `MESSAGE_ACTION_TYPE_${type}`, target: '77', fromAccountId: from, emoji: '', ...extra });
  assert.equal(act('EDIT', ME, { text: 'not mine to edit' }), false);
  assert.equal(act('EDIT', BOB, { text: 'second' }), true);
  act('REACT', ME, { emoji: '👍' });
  act('REACT', ME, { emoji: '❤️' });
  assert.deepEqual(chat.messages[0].reactions, { [ME]: '❤️' });
  act('REACT', ME);
  assert.deepEqual(chat.messages[0].reactions, {});
  act('DELETE', BOB);
  assert.deepEqual([chat.messages[0].deleted, chat.messages[0].text, chat.messages[0].edited], [true, '', true]);
  assert.equal(act('EDIT', BOB, { text: 'too late' }), false);
});

test('an item of a newer server moves the cursor (it will be acked) and shows nothing', () => {
  const state = model.emptyState();
  const effects = model.applyInboxItem(state, { seq: '5', serverMsgId: '9' } as InboxItem, ME);
  assert.deepEqual([state.cursor, effects.changed, Object.keys(state.chats).length], ['5', false, 0]);
});

test('a group event updates the group and leaves a notice; being removed closes the composer', () => {
  const state = model.emptyState();
  model.applyInboxItem(state, { seq: '1', serverMsgId: '5', groupEvent: { type: 'GROUP_EVENT_TYPE_CREATED', groupId: '7', byAccountId: BOB, accountIds: [ME], info: { groupId: '7', name: 'Trio', version: '1' } } }, ME);
  const chat = state.chats[model.groupKey('7')];
  assert.equal(chat.group?.name, 'Trio');
  assert.equal(chat.messages[0].notice, true);
  model.applyInboxItem(state, { seq: '2', serverMsgId: '6', groupEvent: { type: 'GROUP_EVENT_TYPE_MEMBERS_REMOVED', groupId: '7', byAccountId: BOB, accountIds: [ME], info: { groupId: '7', name: 'Trio', version: '2' } } }, ME);
  assert.equal(chat.group?.left, true);
});

test('a declined join request reads as declined, a dropped one as withdrawn', () => {
  const state = model.emptyState();
  const declined = { type: 'GROUP_EVENT_TYPE_JOIN_DECLINED', groupId: '8', byAccountId: BOB, accountIds: [ME], info: { groupId: '8', name: 'Club', version: '3' } };
  model.applyInboxItem(state, { seq: '1', serverMsgId: '5', groupEvent: declined }, ME);
  const withdrawn = { ...declined, byAccountId: '99', accountIds: ['99'], info: { groupId: '8', name: 'Club', version: '4' } };
  model.applyInboxItem(state, { seq: '2', serverMsgId: '6', groupEvent: withdrawn }, ME);
  const texts = state.chats[model.groupKey('8')].messages.map((m) => m.text);
  assert.deepEqual(texts, [`#${BOB} declined the join request of You`, '#99 withdrew the join request']);
});

test('payload text survives base64 both ways; bytes that are not UTF-8 are unreadable', () => {
  for (const s of ['hello', 'héllo 👋 ⛰', '']) assert.equal(base64ToText(textToBase64(s)), s);
  assert.equal(base64ToText('aGVsbG8'), 'hello'); // unpadded is read too
  assert.equal(base64ToText('/w=='), undefined); // 0xff
});

test('reconnect delays grow, stay under the cap and never hit 0', () => {
  const policy = { initialMs: 500, maxMs: 15_000 };
  assert.equal(backoffDelayMs(policy, 0, () => 0), 125);
  assert.equal(backoffDelayMs(policy, 3, () => 0.999), 3996);
  assert.ok(backoffDelayMs(policy, 50, () => 0.999) <= 15_000);
});

function withMe([item, opened]: [InboxItem, Opened]): [InboxItem, string, Opened] {
  return [item, ME, opened];
}

test('an undecryptable message is shown as such with its reason; a room key shows nothing', () => {
  const state = model.emptyState();
  const [item] = fromBob(1, '5');
  model.applyInboxItem(state, item, ME, { kind: 'undecryptable', reason: 'no session with the sender decrypts it' });
  const shown = state.chats[model.directKey(BOB)].messages[0];
  assert.equal(shown.unreadable, true);
  assert.equal(shown.unreadableReason, 'no session with the sender decrypts it');
  assert.equal(shown.text, '', 'never the envelope');
  const key: InboxItem = { seq: '2', serverMsgId: '6', groupMessage: { groupId: '7', fromAccountId: BOB, payload: 'e30=' } };
  model.applyInboxItem(state, key, ME, { kind: 'control' });
  assert.equal(state.chats[model.groupKey('7')], undefined, 'a key share makes no chat and no bubble');
  assert.equal(state.cursor, '2', 'but it is past the cursor (acked)');
  const [enc] = fromBob(3, '8');
  model.applyInboxItem(state, enc, ME, { kind: 'text', text: 'secret', encrypted: true });
  assert.equal(state.chats[model.directKey(BOB)].messages[1].encrypted, true);
});

test('an encrypted edit and reaction apply their opened contents', () => {
  const state = model.emptyState();
  model.applyInboxItem(state, ...withMe(fromBob(1, '5', 'helo'))).changed;
  const action = (seq: number, type: string): InboxItem => ({ seq: String(seq), messageAction: { type, targetServerMsgId: '5', fromAccountId: BOB, peerAccountId: BOB, payload: 'e30=' } });
  model.applyInboxItem(state, action(2, 'MESSAGE_ACTION_TYPE_EDIT'), ME, { kind: 'edit', text: 'hello', encrypted: true });
  model.applyInboxItem(state, action(3, 'MESSAGE_ACTION_TYPE_REACT'), ME, { kind: 'react', emoji: '👍', encrypted: true });
  const m = state.chats[model.directKey(BOB)].messages[0];
  assert.equal(m.text, 'hello');
  assert.deepEqual(m.reactions, { [BOB]: '👍' });
});

test('a changed safety number is said in the 1:1 chat with that person, once, and not counted unread', () => {
  const state = model.emptyState();
  model.applyInboxItem(state, ...withMe(fromBob(1, '5')));
  const change = (seq: number): InboxItem => ({ seq: String(seq), serverMsgId: '9', identityChange: { accountId: BOB, phone: '+2', deviceId: 2, type: 'IDENTITY_CHANGE_TYPE_DEVICE_ADDED' } });
  model.applyInboxItem(state, change(2), ME);
  model.applyInboxItem(state, { ...change(3) }, ME);
  const chat = state.chats[model.directKey(BOB)];
  assert.equal(chat.messages.filter((m) => m.notice).length, 1);
  assert.match(chat.messages[1].text, /added a device: the safety number changed/);
  assert.equal(model.unreadCount(chat), 1, 'only the message counts');
  model.applyInboxItem(state, { seq: '4', identityChange: { accountId: '1003', type: 'IDENTITY_CHANGE_TYPE_DEVICE_ADDED' } }, ME);
  assert.equal(state.chats[model.directKey('1003')], undefined, 'no chat is made for it');
});

test('ids in contents keep every digit', () => {
  const c = parseExact('{"v":1,"group":18446744073709551615,"target":"7534543487471977472"}') as Record<string, string>;
  assert.equal(String(c.group), '18446744073709551615');
  assert.equal(c.target, '7534543487471977472');
  assert.deepEqual(parseExact('{"a":[1.5,-2e3,"x\\"7"],"b":-3}'), { a: [1.5, -2000, 'x"7'], b: '-3' });
});

const photo: MediaMessage = {
  caption: 'look',
  media: [{ mediaId: 'ab'.repeat(32), kind: 1, sizeBytes: 300 * 1024, sha256: bytesToBase64(new Uint8Array(32).fill(7)), mime: 'image/png', width: 1280, height: 960, durationMs: 0, thumbnailId: '', key: bytesToBase64(new Uint8Array(32).fill(9)), thumbnailKey: '', fileName: 'a.png' }],
};

test('a MediaMessage survives protobuf both ways, with the field numbers of iris.proto', () => {
  const bytes = encodeMediaMessage(photo);
  assert.deepEqual(decodeMediaMessage(bytes), photo);
  // field 1 (media, length-delimited) first, then its field 1 (media_id): 0x0a … 0x0a 0x40.
  assert.equal(bytes[0], 0x0a);
  assert.deepEqual([...bytes.subarray(bytes[1] < 0x80 ? 2 : 3, (bytes[1] < 0x80 ? 2 : 3) + 2)], [0x0a, 64]);
  assert.throws(() => decodeMediaMessage(Uint8Array.from([0x0a, 0x05, 0x01])), /truncated/);
});

test('media encryption round-trips, and a flipped bit, another key or another hash is refused', async () => {
  const plain = new Uint8Array(100_000).map((_, i) => i % 251);
  const key = crypto.getRandomValues(new Uint8Array(32));
  const blob = await encryptMedia(plain, key);
  assert.equal(blob.length, plain.length + 16 + 32);
  const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', plain));
  assert.deepEqual(await decryptMedia(blob, key, hash), plain);
  const bad = blob.slice();
  bad[1000] ^= 1;
  await assert.rejects(decryptMedia(bad, key), /MAC/);
  await assert.rejects(decryptMedia(blob, new Uint8Array(32).fill(1)), /MAC/);
  await assert.rejects(decryptMedia(blob, key, new Uint8Array(32)), /SHA-256/);
  assert.deepEqual(sniff(Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), ''), { kind: 1, mime: 'image/png' });
  assert.deepEqual(sniff(Uint8Array.from([0x89, 0x50, 0x4e, 0x47]), ''), { kind: 4, mime: 'application/octet-stream' }, 'the whole signature, as the SDK');
  assert.deepEqual(sniff(Uint8Array.from([1, 2, 3]), 'application/pdf'), { kind: 4, mime: 'application/pdf' });
  const ascii = (s: string) => Uint8Array.from([...s].map((c) => c.charCodeAt(0)));
  // The SDK's table (iris_proto::media::sniff): voice notes and videos are not documents.
  assert.deepEqual(sniff(ascii('RIFF\0\0\0\0WAVEfmt '), ''), { kind: 2, mime: 'audio/wav' });
  assert.deepEqual(sniff(ascii('RIFF\0\0\0\0WEBPVP8 '), ''), { kind: 1, mime: 'image/webp' });
  assert.deepEqual(sniff(ascii('OggS\0'), ''), { kind: 2, mime: 'audio/ogg' });
  assert.deepEqual(sniff(ascii('ID3\x04'), ''), { kind: 2, mime: 'audio/mpeg' });
  assert.deepEqual(sniff(ascii('\0\0\0\x20ftypM4A '), ''), { kind: 2, mime: 'audio/mp4' });
  assert.deepEqual(sniff(ascii('\0\0\0\x20ftypisom'), ''), { kind: 3, mime: 'video/mp4' });
  assert.deepEqual(sniff(ascii('\0\0\0\x14ftypqt  '), ''), { kind: 3, mime: 'video/quicktime' });
  assert.deepEqual(sniff(ascii('\x1a\x45\xdf\xa3'), ''), { kind: 3, mime: 'video/webm' });
});

test('safety numbers are the same on both sides and change with any device key; signed strings are the SDK\'s', async () => {
  const devices = [
    { account: '1', device: 1, ed25519: 'A' },
    { account: '2', device: 1, ed25519: 'B' },
    { account: '2', device: 2, ed25519: 'C' },
  ];
  const n = await safetyNumber('1', '2', devices);
  assert.match(n, /^(\d{5} ){11}\d{5}$/);
  assert.equal(await safetyNumber('2', '1', devices), n);
  assert.notEqual(await safetyNumber('1', '2', [...devices.slice(0, 2), { account: '2', device: 2, ed25519: 'D' }]), n);
  assert.equal(signed.oneTimeKey('7', 2, 'AAAAAQ', 'K'), 'iris.v1.otk|7|2|AAAAAQ|K');
  assert.equal(signed.fallbackKey('7', 2, 'AAAAAg', 'K'), 'iris.v1.fallback|7|2|AAAAAg|K');
  assert.equal(signed.identity('C', 'E'), 'iris.v1.identity|C|E');
  assert.deepEqual(base64ToBytes('AQID'), Uint8Array.from([1, 2, 3]));
});

test('a link code becomes a QR code with its finder patterns and a quiet zone', () => {
  const { d, size } = qrPath('iris-link:K7QF-M2XD');
  // 19 bytes at level M need version 2: 25 modules, plus 4 of quiet zone on each side.
  assert.equal(size, 33);
  for (const [x, y] of [[4, 4], [10, 4], [4, 10], [22, 4], [4, 22]]) {
    assert.ok(d.includes(`M${x} ${y}h1v1h-1z`), `the finder patterns' corner modules are dark (${x},${y})`);
  }
  assert.ok(!d.includes('M0 0h1'), 'the quiet zone stays light');
  assert.equal(qrPath('iris-link:K7QF-M2XD').d, d, 'the same code, the same picture');
  assert.notEqual(qrPath('iris-link:AAAA-BBBB').d, d);
});
