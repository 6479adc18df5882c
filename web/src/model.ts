// The client's state and the pure functions that change it: chats, messages with their ticks,
// groups, the inbox cursor and the sends not yet accepted. No I/O and no clock: inbox items
// (already opened by `crypto.ts`) and local actions go in, the new state comes out, so this is
// unit-tested without a browser. `storage.ts` persists it; `session.ts` drives it.

import type { Opened } from './crypto';
import type { MediaMessage } from './media';
import { compareU64, type GroupInfo, type GroupMember, type GroupSettings, type InboxItem, type U64 } from './proto';

/** `u:<account id>` for a 1:1 chat, `g:<group id>` for a group. */
export type ChatKey = string;

/** A sent message's state: ⏱ pending, ✓ accepted, ✓✓ delivered, blue ✓✓ read, or failed. */
export type Tick = 'pending' | 'sent' | 'delivered' | 'read' | 'failed';
const TICK_RANK: Record<Tick, number> = { failed: -1, pending: 0, sent: 1, delivered: 2, read: 3 };

/** How many messages of one chat are kept in the browser. */
export const MESSAGES_PER_CHAT_MAX = 500;
/** Edits are accepted by the server within 15 minutes of sending. */
export const EDIT_WINDOW_MS = 15 * 60 * 1000;
/** Deletion for everyone within 48 hours. */
export const DELETE_WINDOW_MS = 48 * 60 * 60 * 1000;

export interface ChatMessage {
  /** The server id once known, else `local:<client id>`. */
  id: string;
  serverMsgId?: U64;
  clientMsgId?: string;
  fromMe: boolean;
  fromAccountId: U64;
  fromPhone: string;
  text: string;
  /** The payload could not be opened (not text, or not decryptable). */
  unreadable?: boolean;
  /** Why it could not be decrypted (shown on the bubble). */
  unreadableReason?: string;
  /** It came (or went) end-to-end encrypted. */
  encrypted?: boolean;
  /** Photos and files it carries (with their keys: this state is the device's own). */
  media?: MediaMessage;
  /** Server time; local time while pending. */
  tsMs: number;
  /** Mine only. */
  tick?: Tick;
  failure?: string;
  replyTo?: U64;
  forwarded?: boolean;
  edited?: boolean;
  deleted?: boolean;
  /** Account id → emoji. */
  reactions?: Record<U64, string>;
  /** Incoming: seen here or on another of my devices (not counted as unread). */
  seen?: boolean;
  /** Incoming: a READ receipt for it was accepted by the server. */
  readReported?: boolean;
  /** A group notice ("+1… added +1…"), not a message. */
  notice?: boolean;
}

export interface GroupMeta {
  name: string;
  description: string;
  settings: GroupSettings;
  /** Empty until the roster was fetched. */
  members: { accountId: U64; phone: string; role: string }[];
  /** Accounts asking to join (admins only see them; with the roster). */
  pending?: U64[];
  /** I left or was removed. */
  left?: boolean;
  version?: U64;
}

export interface Chat {
  key: ChatKey;
  kind: 'direct' | 'group';
  peerAccountId?: U64;
  phone?: string;
  groupId?: U64;
  group?: GroupMeta;
  messages: ChatMessage[];
  lastActivityMs: number;
}

/** A message waiting for `ACCEPTED`; resent with the same client id after a reconnect. */
export interface PendingSend {
  clientMsgId: string;
  chatKey: ChatKey;
  text: string;
  replyTo?: U64;
  /** A media message: the uploaded blobs (the text is then the caption); its `media_ids` are
   * derived from them (`mediaIdsOf`). */
  media?: MediaMessage;
}

export interface ClientState {
  version: 1;
  /** Highest inbox seq fully processed and stored: `Hello.resume_after_seq`. */
  cursor: U64;
  chats: Record<ChatKey, Chat>;
  outbox: PendingSend[];
}

export function emptyState(): ClientState {
  return { version: 1, cursor: '0', chats: {}, outbox: [] };
}

export const directKey = (accountId: U64): ChatKey => `u:${accountId}`;
export const groupKey = (groupId: U64): ChatKey => `g:${groupId}`;

/** What a message's opened payload puts on its bubble. */
function shownOf(opened: Opened | undefined): Pick<ChatMessage, 'text' | 'unreadable' | 'unreadableReason' | 'encrypted' | 'media'> {
  switch (opened?.kind) {
    case 'text':
      return { text: opened.text, encrypted: opened.encrypted || undefined };
    case 'media':
      return { text: opened.media.caption, media: opened.media, encrypted: opened.encrypted || undefined };
    case 'undecryptable':
      return { text: '', unreadable: true, unreadableReason: opened.reason };
    default:
      return { text: '', unreadable: true, unreadableReason: 'not a message' };
  }
}

/** What the caller must do after applying an item. */
export interface ItemEffects {
  /** Groups whose roster should be fetched again. */
  refreshGroups: U64[];
  /** Whether the state changed in a way the user sees. */
  changed: boolean;
}

export function ensureDirect(state: ClientState, peer: U64, phone: string | undefined, nowMs = 0): Chat {
  const key = directKey(peer);
  let chat = state.chats[key];
  if (!chat) {
    chat = { key, kind: 'direct', peerAccountId: peer, phone, messages: [], lastActivityMs: nowMs };
    state.chats[key] = chat;
  } else if (phone && !chat.phone) {
    chat.phone = phone;
  }
  return chat;
}

export function ensureGroup(state: ClientState, groupId: U64, nowMs = 0): Chat {
  const key = groupKey(groupId);
  let chat = state.chats[key];
  if (!chat) {
    chat = {
      key,
      kind: 'group',
      groupId,
      group: { name: 'Group', description: '', settings: {}, members: [] },
      messages: [],
      lastActivityMs: nowMs,
    };
    state.chats[key] = chat;
  }
  return chat;
}

export function findMessage(chat: Chat | undefined, serverMsgId: U64 | undefined): ChatMessage | undefined {
  if (!chat || !serverMsgId) return undefined;
  return chat.messages.find((m) => m.serverMsgId === serverMsgId);
}

function pushMessage(chat: Chat, message: ChatMessage): void {
  chat.messages.push(message);
  if (chat.messages.length > MESSAGES_PER_CHAT_MAX) chat.messages.splice(0, chat.messages.length - MESSAGES_PER_CHAT_MAX);
  chat.lastActivityMs = Math.max(chat.lastActivityMs, message.tsMs);
}

function raiseTick(message: ChatMessage, tick: Tick): void {
  if (!message.fromMe) return;
  if (TICK_RANK[tick] > TICK_RANK[message.tick ?? 'pending']) message.tick = tick;
}

/**
 * Applies one inbox item. Items at or below the cursor, and messages already shown (same
 * server id), change nothing: delivery is at-least-once, display is exactly-once.
 */
export function applyInboxItem(state: ClientState, item: InboxItem, me: U64, opened?: Opened): ItemEffects {
  const effects: ItemEffects = { refreshGroups: [], changed: false };
  const seq = item.seq ?? '0';
  if (compareU64(seq, state.cursor) <= 0) return effects;
  state.cursor = seq;
  const ts = Number(item.serverTsMs ?? 0);
  const id = item.serverMsgId;
  // A group's session key, shared pairwise: for the crypto only.
  if (opened?.kind === 'control') return effects;

  if (item.message) {
    const m = item.message;
    const fromMe = m.fromAccountId === me;
    const peer = (fromMe ? m.toAccountId : m.fromAccountId) ?? '0';
    const chat = ensureDirect(state, peer, fromMe ? m.toPhone : m.fromPhone, ts);
    if (findMessage(chat, id)) return effects;
    pushMessage(chat, {
      id: id ?? `seq:${seq}`,
      serverMsgId: id,
      clientMsgId: m.clientMsgId,
      fromMe,
      fromAccountId: m.fromAccountId ?? '0',
      fromPhone: m.fromPhone ?? '',
      ...shownOf(opened),
      tsMs: ts,
      tick: fromMe ? 'sent' : undefined,
      replyTo: nonZero(m.replyToServerMsgId),
      forwarded: m.forwarded || undefined,
      seen: fromMe || undefined,
    });
    effects.changed = true;
  } else if (item.groupMessage) {
    const m = item.groupMessage;
    const groupId = m.groupId ?? '0';
    const chat = ensureGroup(state, groupId, ts);
    if (chat.group && chat.group.members.length === 0) effects.refreshGroups.push(groupId);
    if (findMessage(chat, id)) return effects;
    const fromMe = m.fromAccountId === me;
    pushMessage(chat, {
      id: id ?? `seq:${seq}`,
      serverMsgId: id,
      clientMsgId: m.clientMsgId,
      fromMe,
      fromAccountId: m.fromAccountId ?? '0',
      fromPhone: m.fromPhone ?? '',
      ...shownOf(opened),
      tsMs: ts,
      tick: fromMe ? 'sent' : undefined,
      replyTo: nonZero(m.replyToServerMsgId),
      forwarded: m.forwarded || undefined,
      seen: fromMe || undefined,
    });
    effects.changed = true;
  } else if (item.receipt) {
    effects.changed = applyReceipt(state, item.receipt, me);
  } else if (item.groupReceipt) {
    const r = item.groupReceipt;
    const chat = state.chats[groupKey(r.groupId ?? '0')];
    const tick: Tick | undefined =
      r.type === 'GROUP_RECEIPT_TYPE_READ_BY_ALL' ? 'read' : r.type === 'GROUP_RECEIPT_TYPE_DELIVERED_TO_ALL' ? 'delivered' : undefined;
    for (const msgId of r.serverMsgIds ?? []) {
      const message = findMessage(chat, msgId);
      if (message && tick) {
        raiseTick(message, tick);
        effects.changed = true;
      }
    }
  } else if (item.groupEvent) {
    applyGroupEvent(state, item.groupEvent, me, ts, id ?? `seq:${seq}`, effects);
  } else if (item.messageAction) {
    const a = item.messageAction;
    const chat = nonZero(a.groupId) ? state.chats[groupKey(a.groupId!)] : state.chats[directKey(a.peerAccountId ?? '0')];
    effects.changed = applyAction(chat, {
      type: a.type ?? '',
      target: a.targetServerMsgId,
      fromAccountId: a.fromAccountId ?? '0',
      text: opened?.kind === 'edit' ? opened.text : undefined,
      emoji: opened?.kind === 'react' ? opened.emoji : (a.emoji ?? ''),
    });
  } else if (item.identityChange) {
    // "Security code changed": said in the 1:1 chat with that person, if there is one.
    const c = item.identityChange;
    const chat = c.accountId && c.accountId !== me ? state.chats[directKey(c.accountId)] : undefined;
    if (chat && !findMessage(chat, id ?? `seq:${seq}`)) {
      const added = c.type === 'IDENTITY_CHANGE_TYPE_DEVICE_ADDED';
      pushMessage(chat, {
        id: id ?? `seq:${seq}`,
        serverMsgId: id,
        fromMe: false,
        fromAccountId: c.accountId!,
        fromPhone: c.phone ?? '',
        text: `🔒 ${chat.phone ?? c.phone ?? 'They'} ${added ? 'added' : 'removed'} a device: the safety number changed`,
        tsMs: ts,
        notice: true,
        seen: true,
      });
      effects.changed = true;
    }
  }
  // Anything else is an item of a newer server: acked, not shown (forward compatible).
  return effects;
}

function applyReceipt(state: ClientState, r: NonNullable<InboxItem['receipt']>, me: U64): boolean {
  let changed = false;
  if (r.fromAccountId === me) {
    // My other device read these messages of the conversation with `peerAccountId`.
    if (r.type !== 'RECEIPT_TYPE_READ') return false;
    const chat = state.chats[directKey(r.peerAccountId ?? '0')];
    for (const msgId of r.serverMsgIds ?? []) {
      const message = findMessage(chat, msgId);
      if (message && !message.fromMe) {
        message.seen = true;
        message.readReported = true;
        changed = true;
      }
    }
    return changed;
  }
  const chat = state.chats[directKey(r.fromAccountId ?? '0')];
  const tick: Tick | undefined =
    r.type === 'RECEIPT_TYPE_READ' ? 'read' : r.type === 'RECEIPT_TYPE_DELIVERED' ? 'delivered' : undefined;
  if (!tick) return false;
  for (const msgId of r.serverMsgIds ?? []) {
    const message = findMessage(chat, msgId);
    if (message) {
      raiseTick(message, tick);
      changed = true;
    }
  }
  return changed;
}

/** An edit, deletion or reaction, from the inbox or made here. Returns whether it applied. */
export function applyAction(
  chat: Chat | undefined,
  a: { type: string; target?: U64; fromAccountId: U64; text?: string; emoji: string },
): boolean {
  const message = findMessage(chat, a.target);
  if (!message || message.deleted) return false;
  switch (a.type) {
    case 'MESSAGE_ACTION_TYPE_EDIT':
      if (message.fromAccountId !== a.fromAccountId || a.text === undefined) return false;
      message.text = a.text;
      message.edited = true;
      return true;
    case 'MESSAGE_ACTION_TYPE_DELETE':
      message.deleted = true;
      message.text = '';
      message.reactions = undefined;
      return true;
    case 'MESSAGE_ACTION_TYPE_REACT': {
      const reactions = { ...(message.reactions ?? {}) };
      if (a.emoji) reactions[a.fromAccountId] = a.emoji;
      else delete reactions[a.fromAccountId];
      message.reactions = reactions;
      return true;
    }
    default:
      return false;
  }
}

const GROUP_EVENT_TEXT: Record<string, string> = {
  GROUP_EVENT_TYPE_CREATED: 'created the group',
  GROUP_EVENT_TYPE_INFO_CHANGED: 'changed the group settings',
  GROUP_EVENT_TYPE_MEMBERS_ADDED: 'added',
  GROUP_EVENT_TYPE_MEMBERS_REMOVED: 'removed',
  GROUP_EVENT_TYPE_MEMBER_LEFT: 'left',
  GROUP_EVENT_TYPE_ADMINS_PROMOTED: 'made admin:',
  GROUP_EVENT_TYPE_ADMINS_DEMOTED: 'removed as admin:',
  GROUP_EVENT_TYPE_JOIN_REQUESTED: 'asked to join',
  GROUP_EVENT_TYPE_JOIN_DECLINED: 'declined the join request of',
};

/** The verb of an event its author made about themselves alone ("joined", not "added You"). */
const GROUP_EVENT_SELF_TEXT: Record<string, string> = {
  GROUP_EVENT_TYPE_MEMBERS_ADDED: 'joined',
  GROUP_EVENT_TYPE_JOIN_DECLINED: 'withdrew the join request',
};

function applyGroupEvent(
  state: ClientState,
  e: NonNullable<InboxItem['groupEvent']>,
  me: U64,
  ts: number,
  id: string,
  effects: ItemEffects,
): void {
  const groupId = e.groupId ?? e.info?.groupId ?? '0';
  const chat = ensureGroup(state, groupId, ts);
  if (e.info) mergeGroupInfo(chat, e.info, false);
  const about = e.accountIds ?? [];
  const removedMe =
    (e.type === 'GROUP_EVENT_TYPE_MEMBERS_REMOVED' && about.includes(me)) ||
    (e.type === 'GROUP_EVENT_TYPE_MEMBER_LEFT' && (e.byAccountId === me || about.includes(me)));
  if (removedMe && chat.group) chat.group.left = true;
  if (e.type === 'GROUP_EVENT_TYPE_MEMBERS_ADDED' && about.includes(me) && chat.group) chat.group.left = false;
  if (findMessage(chat, id)) return;
  const phoneOf = (account: U64) => (account === me ? 'You' : phoneIn(state, chat, account) ?? `#${account}`);
  const selfVerb = about.length === 1 && about[0] === e.byAccountId ? GROUP_EVENT_SELF_TEXT[e.type ?? ''] : undefined;
  const verb = selfVerb ?? GROUP_EVENT_TEXT[e.type ?? ''] ?? 'changed the group';
  const whom = selfVerb
    ? ''
    : e.type === 'GROUP_EVENT_TYPE_CREATED' || e.type === 'GROUP_EVENT_TYPE_INFO_CHANGED' || e.type === 'GROUP_EVENT_TYPE_MEMBER_LEFT'
      ? ''
      : ' ' + about.map(phoneOf).join(', ');
  pushMessage(chat, {
    id,
    serverMsgId: id,
    fromMe: e.byAccountId === me,
    fromAccountId: e.byAccountId ?? '0',
    fromPhone: '',
    text: `${phoneOf(e.byAccountId ?? '0')} ${verb}${whom}`.trim(),
    tsMs: ts,
    notice: true,
    seen: true,
  });
  effects.refreshGroups.push(groupId);
  effects.changed = true;
}

function phoneIn(state: ClientState, chat: Chat, account: U64): string | undefined {
  return (
    chat.group?.members.find((m) => m.accountId === account)?.phone ?? state.chats[directKey(account)]?.phone
  );
}

/** Takes a group's state from the server (the roster only when `withRoster`). */
export function mergeGroupInfo(chat: Chat, info: GroupInfo, withRoster: boolean): void {
  const group = chat.group ?? { name: 'Group', description: '', settings: {}, members: [] };
  if (info.version && group.version && compareU64(info.version, group.version) < 0 && !withRoster) return;
  group.name = info.name || group.name;
  group.description = info.description ?? '';
  group.settings = info.settings ?? {};
  group.version = info.version ?? group.version;
  if (withRoster) {
    group.members = (info.members ?? []).map((m: GroupMember) => ({
      accountId: m.accountId ?? '0',
      phone: m.phone ?? '',
      role: m.role ?? 'GROUP_ROLE_MEMBER',
    }));
    group.pending = info.pendingAccountIds ?? [];
  }
  chat.group = group;
}

/** A message typed here, shown at once with the pending tick. */
export function addOutgoing(
  state: ClientState,
  send: PendingSend,
  me: { accountId: U64; phone: string },
  nowMs: number,
  encrypted = false,
): ChatMessage {
  const chat = state.chats[send.chatKey];
  const message: ChatMessage = {
    id: `local:${send.clientMsgId}`,
    clientMsgId: send.clientMsgId,
    fromMe: true,
    fromAccountId: me.accountId,
    fromPhone: me.phone,
    text: send.text,
    media: send.media,
    encrypted: encrypted || undefined,
    tsMs: nowMs,
    tick: 'pending',
    replyTo: send.replyTo,
    seen: true,
  };
  pushMessage(chat, message);
  state.outbox.push(send);
  return message;
}

function localMessage(state: ClientState, chatKey: ChatKey, clientMsgId: string): ChatMessage | undefined {
  return state.chats[chatKey]?.messages.find((m) => m.clientMsgId === clientMsgId && m.fromMe);
}

/** The server stored a pending send (`SendResult ACCEPTED`, or a duplicate answer to a retry). */
export function markAccepted(state: ClientState, chatKey: ChatKey, clientMsgId: string, serverMsgId: U64, serverTsMs: U64): void {
  state.outbox = state.outbox.filter((p) => p.clientMsgId !== clientMsgId);
  const message = localMessage(state, chatKey, clientMsgId);
  if (!message) return;
  message.serverMsgId = serverMsgId;
  message.id = serverMsgId;
  message.tsMs = Number(serverTsMs) || message.tsMs;
  raiseTick(message, 'sent');
  const chat = state.chats[chatKey];
  chat.lastActivityMs = Math.max(chat.lastActivityMs, message.tsMs);
}

/** The server refused a pending send for good. */
export function markFailed(state: ClientState, chatKey: ChatKey, clientMsgId: string, reason: string): void {
  state.outbox = state.outbox.filter((p) => p.clientMsgId !== clientMsgId);
  const message = localMessage(state, chatKey, clientMsgId);
  if (message) {
    message.tick = 'failed';
    message.failure = reason;
  }
}

/** What a forward sends: a message's text, and its media if it has any. */
export type Forwardable = Pick<ChatMessage, 'text' | 'media'>;

/** Adds the copies a forward sent (one per chat, already accepted). */
export function addForwarded(
  state: ClientState,
  chatKey: ChatKey,
  message: Forwardable,
  result: { serverMsgId: U64; serverTsMs: U64; clientMsgId: string },
  me: { accountId: U64; phone: string },
): void {
  const chat = state.chats[chatKey];
  if (!chat || findMessage(chat, result.serverMsgId)) return;
  pushMessage(chat, {
    id: result.serverMsgId,
    serverMsgId: result.serverMsgId,
    clientMsgId: result.clientMsgId,
    fromMe: true,
    fromAccountId: me.accountId,
    fromPhone: me.phone,
    text: message.text,
    media: message.media,
    tsMs: Number(result.serverTsMs),
    tick: 'sent',
    forwarded: true,
    seen: true,
  });
}

/** Incoming messages not yet seen. */
export function unreadCount(chat: Chat): number {
  return chat.messages.reduce((n, m) => n + (!m.fromMe && !m.notice && !m.seen ? 1 : 0), 0);
}

/** Messages in display order: by server time, pending ones last in the order typed. */
export function orderedMessages(chat: Chat): ChatMessage[] {
  const settled = chat.messages.filter((m) => m.tick !== 'pending' && m.tick !== 'failed');
  const waiting = chat.messages.filter((m) => m.tick === 'pending' || m.tick === 'failed');
  return [...settled.sort((a, b) => a.tsMs - b.tsMs), ...waiting];
}

/** Chats, most recent first. */
export function orderedChats(state: ClientState): Chat[] {
  return Object.values(state.chats).sort((a, b) => b.lastActivityMs - a.lastActivityMs);
}

/** The newest message that is not a pending notice, for the chat list. */
export function lastMessage(chat: Chat): ChatMessage | undefined {
  const ordered = orderedMessages(chat);
  return ordered[ordered.length - 1];
}

/** My role in a group, from the roster. */
export function myRole(chat: Chat, me: U64): string | undefined {
  return chat.group?.members.find((m) => m.accountId === me)?.role;
}

export function isAdminRole(role: string | undefined): boolean {
  return role === 'GROUP_ROLE_ADMIN' || role === 'GROUP_ROLE_CREATOR';
}

function nonZero(id: U64 | undefined): U64 | undefined {
  return id && id !== '0' ? id : undefined;
}
