// Unit tests of the client's state (src/model.ts), the payload codec (src/crypto.ts) and the
// reconnect delays (src/backoff.ts): no browser, no server. Bundled by `build.mjs --tests`.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffDelayMs } from '../../src/backoff';
import { base64ToText, plaintext, textToBase64, UnreadablePayload } from '../../src/crypto';
import * as model from '../../src/model';
import type { InboxItem } from '../../src/proto';

const ME = '1001';
const BOB = '1002';
const text = (t: string): model.OpenedText => ({ text: t, unreadable: false });
const fromBob = (seq: number, id: string, body = 'hi'): [InboxItem, model.OpenedText] => [
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

test('payload text survives base64 both ways; bytes that are not UTF-8 are unreadable', () => {
  for (const s of ['hello', 'héllo 👋 ⛰', '']) assert.equal(base64ToText(textToBase64(s)), s);
  assert.equal(base64ToText('aGVsbG8'), 'hello'); // unpadded is read too
  assert.throws(() => base64ToText('/w=='), UnreadablePayload); // 0xff
});

test('reconnect delays grow, stay under the cap and never hit 0', () => {
  const policy = { initialMs: 500, maxMs: 15_000 };
  assert.equal(backoffDelayMs(policy, 0, () => 0), 125);
  assert.equal(backoffDelayMs(policy, 3, () => 0.999), 3996);
  assert.ok(backoffDelayMs(policy, 50, () => 0.999) <= 15_000);
});

function withMe([item, opened]: [InboxItem, model.OpenedText]): [InboxItem, string, model.OpenedText] {
  return [item, ME, opened];
}

test('an end-to-end encrypted envelope is unreadable here, never shown as its JSON', async () => {
  const origin = { accountId: BOB, deviceId: 1 };
  for (const envelope of ['{"v":1,"alg":"olm.v1","sender_key":"k","type":0,"body":"AwoQ"}', '{"v":1,"alg":"none"}']) {
    await assert.rejects(plaintext.open(origin, textToBase64(envelope)), UnreadablePayload);
  }
  // Text that merely looks like JSON is still text.
  assert.equal(await plaintext.open(origin, textToBase64('{"v":2,"alg":"olm.v1"}')), '{"v":2,"alg":"olm.v1"}');
  assert.equal(await plaintext.open(origin, textToBase64('{ hi }')), '{ hi }');
});
