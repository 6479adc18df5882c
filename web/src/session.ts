// A logged-in device: it owns the connection (reconnecting with backoff and resuming from the
// stored inbox cursor), the client state and everything that flows through them — deliveries
// applied in order, stored, then acked; sends queued until ACCEPTED and resent with the same
// client id after a reconnect; READ receipts for what was seen; typing; presence; groups;
// message actions. The UI reads `session.state` and friends and calls the verbs below; it
// subscribes to be told when something changed.

import { backoffDelayMs, defaultBackoff } from './backoff';
import { Connection, RequestFailed, type CloseReason } from './connection';
import type { Content, Opened, PayloadCrypto, SealedBody } from './crypto';
import { forgetKeys, type Ask } from './e2e';
import { ApiFailure, httpApi, type Credentials, type DeviceInfo, type PendingLinkInfo } from './http_api';
import * as model from './model';
import type { ChatKey, ClientState, PendingSend } from './model';
import { downloadMedia, downloadThumbnail, mediaIdsOf, uploadFile, type MediaRef } from './media';
import { compareU64, isU64, type ClientOp, type DevicePayloads, type GroupMemberAction, type GroupSettings, type InboxItem, type PresencePrivacy, type ServerEvent, type U64 } from './proto';
import * as storage from './storage';

/** The state of the link to the server, shown as a banner unless `online`. */
export type LinkState =
  | { kind: 'connecting' }
  | { kind: 'online' }
  | { kind: 'offline'; retryAtMs: number; reason: string }
  | { kind: 'replaced' };

export interface Presence {
  online: boolean;
  lastSeenMs: number;
}

export interface Notice {
  id: number;
  kind: 'error' | 'info';
  text: string;
}

/** A typing indicator lasts this long after the last `typing = true` (iris.proto). */
const TYPING_SHOWN_MS = 5000;
/** While typing, "still typing" is repeated at most this often (the server rate-limits). */
const TYPING_REPEAT_MS = 3000;
const NOTICE_SHOWN_MS = 6000;
/** Codes after which a send is retried (same client id) rather than marked failed. */
const RETRYABLE = new Set(['ERROR_CODE_RATE_LIMITED', 'ERROR_CODE_OVERLOADED', 'ERROR_CODE_UNAVAILABLE', 'CLIENT_NOT_CONNECTED', 'ERROR_CODE_INTERNAL']);
/** A send refused with STALE_DEVICES (a device linked or revoked meanwhile) is sealed again
 * (the directory asked afresh) at once, this many times. */
const STALE_RETRIES = 3;

export interface Me {
  accountId: U64;
  deviceId: number;
  phone: string;
}

export class Session {
  readonly me: Me;
  state: ClientState;
  link: LinkState = { kind: 'connecting' };
  presence = new Map<U64, Presence>();
  /** Chat → account → when its indicator expires. */
  typing = new Map<ChatKey, Map<U64, number>>();
  notices: Notice[] = [];
  /** Malformed frames or events ignored since the page loaded. */
  malformedCount = 0;

  private access?: { token: string; expiresAtMs: number };
  private refreshToken: string;
  private refreshing?: Promise<string>;
  private conn?: Connection;
  private attempt = 0;
  private retryTimer?: ReturnType<typeof setTimeout>;
  private stopped = false;
  private inbox: Promise<void> = Promise.resolve();
  private sends: Promise<void> = Promise.resolve();
  private inFlight = new Set<string>();
  private readsInFlight = new Set<string>();
  private typingSent = new Map<ChatKey, { typing: boolean; atMs: number }>();
  private listeners = new Set<() => void>();
  private notifyQueued = false;
  private nextNoticeId = 1;
  private staleRetries = new Map<string, number>();
  private crypto: PayloadCrypto;

  constructor(
    credentials: { accountId: U64; deviceId: number; phone: string; refreshToken: string; access?: Credentials },
    makeCrypto: (me: { accountId: U64; deviceId: number }, ask: Ask) => PayloadCrypto,
    private onSignedOut: (reason: string) => void,
  ) {
    this.me = { accountId: credentials.accountId, deviceId: credentials.deviceId, phone: credentials.phone };
    // The crypto asks over the current connection; a refusal (or no connection) is a RequestFailed.
    this.crypto = makeCrypto(this.me, (op) => {
      const conn = this.conn;
      if (!conn) return Promise.reject(new RequestFailed({ code: 'CLIENT_NOT_CONNECTED', message: 'Not connected to the server.' }));
      return conn.request(op);
    });
    this.refreshToken = credentials.refreshToken;
    if (credentials.access) {
      this.access = { token: credentials.access.access_token, expiresAtMs: credentials.access.access_expires_at_ms };
    }
    this.state = storage.loadState(this.me.accountId, this.me.deviceId);
    addEventListener('online', this.onBrowserOnline);
  }

  get endToEnd(): boolean {
    return this.crypto.endToEnd;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  start(): void {
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    removeEventListener('online', this.onBrowserOnline);
    this.conn?.close();
  }

  /** Reconnects at once (the banner's "Retry now", "Use here"). */
  reconnectNow(): void {
    if (this.stopped) return;
    if (this.link.kind === 'replaced') {
      // Another tab of this device was connected meanwhile and stored newer state: start from it.
      this.state = storage.loadState(this.me.accountId, this.me.deviceId);
      this.crypto.reload();
      this.refreshToken = storage.loadSession()?.refreshToken ?? this.refreshToken;
      this.access = undefined;
    }
    clearTimeout(this.retryTimer);
    this.attempt = 0;
    this.conn?.close();
    this.connect();
  }

  // ----- connection -----------------------------------------------------------------------

  private onBrowserOnline = () => {
    if (this.link.kind === 'offline') this.reconnectNow();
  };

  private async accessToken(): Promise<string> {
    if (this.access && this.access.expiresAtMs - Date.now() > 60_000) return this.access.token;
    this.refreshing ??= httpApi
      .refresh(this.refreshToken)
      .then((c) => {
        this.refreshToken = c.refresh_token;
        storage.saveSession({ ...this.me, refreshToken: c.refresh_token });
        this.access = { token: c.access_token, expiresAtMs: c.access_expires_at_ms };
        return c.access_token;
      })
      .finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    this.link = this.attempt === 0 && this.link.kind !== 'offline' ? { kind: 'connecting' } : this.link;
    this.notify();
    let token: string;
    try {
      token = await this.accessToken();
    } catch (e) {
      const stored = storage.loadSession();
      if (e instanceof ApiFailure && stored && stored.refreshToken !== this.refreshToken && stored.accountId === this.me.accountId && stored.deviceId === this.me.deviceId) {
        // Another tab of this device refreshed first (the token is single use): take its token.
        this.refreshToken = stored.refreshToken;
        this.scheduleReconnect('Refreshing the session.', 0);
        return;
      }
      if (e instanceof ApiFailure && !e.isNetwork && e.status !== 429 && e.status < 500) {
        this.signOut(e.code === 'ERROR_CODE_DEVICE_REVOKED' ? 'This device was logged out.' : 'Your session expired. Please log in again.');
        return;
      }
      this.scheduleReconnect((e as Error).message);
      return;
    }
    if (this.stopped) return;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    let welcomed = false;
    const conn: Connection = new Connection(
      `${scheme}://${location.host}/v1/ws`,
      { token, deviceId: this.me.deviceId, resumeAfterSeq: this.state.cursor },
      {
        onEvent: (event) => this.onEvent(conn, event),
        onMalformed: (detail) => this.onMalformed(detail),
        onClose: (reason) => this.onClose(conn, reason, welcomed),
      },
    );
    this.conn = conn;
    conn.welcome.then(() => {
      welcomed = true;
      if (this.conn === conn) this.onWelcome(conn);
    });
  }

  private onWelcome(conn: Connection): void {
    this.attempt = 0;
    this.inFlight.clear();
    this.readsInFlight.clear();
    // The device's keys are published before it counts as online: whoever it talks to from now
    // on finds them in the directory (a linked device gets its first messages encrypted).
    this.crypto
      .connected()
      .catch((e) => {
        console.warn('iris: publishing keys', e);
        if (!(e instanceof RequestFailed && e.code === 'CLIENT_NOT_CONNECTED')) this.showNotice('error', `Could not publish this device's encryption keys: ${(e as Error).message}`);
      })
      .then(() => this.conn === conn && this.online(conn));
  }

  private online(conn: Connection): void {
    this.link = { kind: 'online' };
    this.notify();
    for (const pending of this.state.outbox) this.transmit(conn, pending);
    this.flushReads();
    this.refreshGroupList();
    const peers = Object.values(this.state.chats).flatMap((c) => (c.peerAccountId ? [c.peerAccountId] : []));
    if (peers.length > 0) this.subscribePresence(peers);
  }

  private onClose(conn: Connection, reason: CloseReason, welcomed: boolean): void {
    if (this.conn !== conn || this.stopped) return;
    this.conn = undefined;
    // Presence and typing were pushed on this connection; they are unknown until the next one.
    this.presence.clear();
    this.typing.clear();
    if (reason.kind === 'closed-by-client') return;
    if (reason.kind === 'go-away') {
      this.scheduleReconnect('The server asked to reconnect.', reason.reconnectAfterMs);
      return;
    }
    if (reason.kind === 'fatal') {
      const code = reason.error.code;
      if (code === 'ERROR_CODE_DEVICE_REVOKED') {
        this.signOut('This device was logged out (revoked).');
        return;
      }
      if (code === 'ERROR_CODE_SESSION_REPLACED') {
        this.link = { kind: 'replaced' };
        this.notify();
        return;
      }
      if (code === 'ERROR_CODE_UNAUTHENTICATED') this.access = undefined;
      if (code === 'ERROR_CODE_INVALID_ARGUMENT' && !welcomed) {
        // The stored cursor is beyond this device's inbox (storage from another server?):
        // start over from the server's cursor; messages already shown are not shown twice.
        this.state.cursor = '0';
        this.persist();
      }
      this.scheduleReconnect(reason.error.message || code || 'The server closed the connection.');
      return;
    }
    this.scheduleReconnect('The connection to the server was lost.');
  }

  private scheduleReconnect(reason: string, delayMs?: number): void {
    if (this.stopped) return;
    const delay = delayMs ?? backoffDelayMs(defaultBackoff, this.attempt);
    this.attempt += 1;
    this.link = { kind: 'offline', retryAtMs: Date.now() + delay, reason };
    this.notify();
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  private onMalformed(detail: string): void {
    this.malformedCount += 1;
    console.warn('iris: ignored a malformed server event:', detail);
    this.showNotice('info', 'Ignored a malformed message from the server.');
  }

  private onEvent(conn: Connection, event: ServerEvent): void {
    if (event.delivery) {
      const items = Array.isArray(event.delivery.items) ? event.delivery.items : [];
      this.inbox = this.inbox.then(() => this.applyDelivery(conn, items));
    } else if (event.presence) {
      this.setPresence([event.presence]);
    } else if (event.typing) {
      this.onTyping(event.typing);
    } else if (event.error) {
      console.warn('iris: unanswered error event', event.error);
    }
  }

  // ----- inbox ----------------------------------------------------------------------------

  private async open(item: InboxItem): Promise<Opened | undefined> {
    const opened = await this.crypto.open(item);
    if (opened?.kind === 'undecryptable') console.warn('iris: undecryptable item', item.seq, opened.reason);
    return opened;
  }

  /** Applies a delivery in order, stores the result, then acks (never before it is stored). */
  private async applyDelivery(conn: Connection, items: InboxItem[]): Promise<void> {
    const before = this.state.cursor;
    const refresh = new Set<U64>();
    const knownChats = new Set(Object.keys(this.state.chats));
    let lastDelivered = 0n;
    for (const item of items) {
      if (typeof item !== 'object' || item === null || !isU64(item.seq)) {
        this.onMalformed('an inbox item without a valid seq');
        continue;
      }
      if (BigInt(item.seq) > lastDelivered) lastDelivered = BigInt(item.seq);
      let opened: Opened | undefined;
      try {
        // An item already processed (redelivered) is not decrypted again: its ratchet step is
        // spent, and the model skips it anyway.
        if (compareU64(item.seq, this.state.cursor) > 0) opened = await this.open(item);
      } catch (e) {
        // The connection went while a key was asked for: this item and the rest come again.
        if (e instanceof RequestFailed && e.code === 'CLIENT_NOT_CONNECTED') {
          if (this.state.cursor !== before) this.persist();
          return;
        }
        opened = { kind: 'undecryptable', reason: (e as Error).message };
      }
      try {
        const effects = model.applyInboxItem(this.state, item, this.me.accountId, opened);
        effects.refreshGroups.forEach((g) => refresh.add(g));
        this.clearTypingOf(item);
      } catch (e) {
        // Never stuck on an entry this client cannot handle: it is skipped, and said so.
        this.onMalformed(`an inbox item this client could not apply: ${(e as Error).message}`);
        if (BigInt(item.seq!) > BigInt(this.state.cursor)) this.state.cursor = item.seq!;
      }
    }
    if (lastDelivered === 0n) return;
    // Ratchets moved while opening: the crypto stored them before this ack too.
    if (this.state.cursor !== before && !this.persist()) return;
    // Everything this delivery carried is processed and stored (the cursor is at least its last
    // seq); acking its last seq never acks beyond what this connection delivered.
    conn.send([{ ack: { upToSeq: String(lastDelivered) } }]);
    for (const groupId of refresh) this.refreshGroup(groupId);
    const newPeers = Object.values(this.state.chats).filter((c) => c.peerAccountId && !knownChats.has(c.key));
    if (newPeers.length > 0) this.subscribePresence(newPeers.map((c) => c.peerAccountId!));
    this.notify();
  }

  private clearTypingOf(item: InboxItem): void {
    const m = item.message ?? item.groupMessage;
    if (!m?.fromAccountId) return;
    const key = item.groupMessage ? model.groupKey(item.groupMessage.groupId ?? '0') : model.directKey(m.fromAccountId);
    this.typing.get(key)?.delete(m.fromAccountId);
  }

  /** Stores the state; false (and an error shown) when the browser refused. */
  private persist(): boolean {
    try {
      storage.saveState(this.me.accountId, this.me.deviceId, this.state);
      return true;
    } catch (e) {
      this.showNotice('error', `This browser's storage refused to save the chats (${(e as Error).message}); new messages stay on the server until it can.`);
      return false;
    }
  }

  private commit(): void {
    this.persist();
    this.notify();
  }

  // ----- sending --------------------------------------------------------------------------

  /** Sends a text message to a chat: shown at once (pending), sent when connected. */
  sendText(chatKey: ChatKey, text: string, replyTo?: U64): void {
    const pending: PendingSend = { clientMsgId: crypto.randomUUID(), chatKey, text, replyTo };
    model.addOutgoing(this.state, pending, this.me, Date.now(), this.crypto.endToEnd);
    this.commit();
    this.setTyping(chatKey, false);
    if (this.conn && this.link.kind === 'online') this.transmit(this.conn, pending);
  }

  /** Sends a failed message again (same client id, so the server never stores it twice). */
  retrySend(chatKey: ChatKey, clientMsgId: string): void {
    const message = this.state.chats[chatKey]?.messages.find((m) => m.clientMsgId === clientMsgId);
    if (!message || message.tick !== 'failed') return;
    message.tick = 'pending';
    message.failure = undefined;
    const pending: PendingSend = { clientMsgId, chatKey, text: message.text, replyTo: message.replyTo, media: message.media };
    this.state.outbox.push(pending);
    this.commit();
    if (this.conn && this.link.kind === 'online') this.transmit(this.conn, pending);
  }

  private transmit(conn: Connection, pending: PendingSend): void {
    if (this.inFlight.has(pending.clientMsgId)) return;
    this.inFlight.add(pending.clientMsgId);
    const chat = this.state.chats[pending.chatKey];
    // Sealing may be asynchronous (E2E); the chain keeps sends in the order they were typed.
    this.sends = this.sends.then(async () => {
      let answer: Promise<ServerEvent>;
      const content: Content = pending.media ? { type: 'media', media: { ...pending.media, caption: pending.text } } : { type: 'text', text: pending.text };
      const mediaIds = pending.media ? mediaIdsOf(pending.media) : undefined;
      try {
        if (chat.kind === 'group') {
          const body = await this.crypto.sealGroup(chat.groupId!, content);
          answer = conn.request({
            group: { send: { groupId: chat.groupId!, clientMsgId: pending.clientMsgId, ...wireBody(body), replyToServerMsgId: pending.replyTo, mediaIds } },
          });
        } else {
          const body = await this.crypto.sealDirect(chat.peerAccountId!, content);
          answer = conn.request({
            send: { clientMsgId: pending.clientMsgId, toAccountId: chat.peerAccountId!, ...wireBody(body), replyToServerMsgId: pending.replyTo, mediaIds },
          });
        }
      } catch (e) {
        answer = Promise.reject(e);
      }
      answer.then(
        (event) => {
          const result = event.sendResult ?? event.groupResult?.sent;
          if (!result?.serverMsgId) throw new RequestFailed({ code: 'CLIENT_BAD_ANSWER', message: 'The server answered a send oddly.' });
          model.markAccepted(this.state, pending.chatKey, pending.clientMsgId, result.serverMsgId, result.serverTsMs ?? '0');
          this.inFlight.delete(pending.clientMsgId);
          this.staleRetries.delete(pending.clientMsgId);
          this.commit();
        },
      ).catch((e: unknown) => this.onSendFailed(conn, pending, e));
    });
  }

  private onSendFailed(conn: Connection, pending: PendingSend, e: unknown): void {
    this.inFlight.delete(pending.clientMsgId);
    const failure = e instanceof RequestFailed ? e : new RequestFailed({ code: 'CLIENT_ERROR', message: (e as Error).message ?? String(e) });
    const stale = this.staleRetries.get(pending.clientMsgId) ?? 0;
    if (failure.code === 'ERROR_CODE_STALE_DEVICES' && stale < STALE_RETRIES && this.conn === conn) {
      this.staleRetries.set(pending.clientMsgId, stale + 1);
      this.transmit(conn, pending);
      return;
    }
    this.staleRetries.delete(pending.clientMsgId);
    if (RETRYABLE.has(failure.code)) {
      const wait = failure.wire.retryAfterMs;
      if (wait && this.conn === conn) setTimeout(() => this.conn === conn && this.transmit(conn, pending), wait);
      return; // otherwise resent after the next Welcome
    }
    model.markFailed(this.state, pending.chatKey, pending.clientMsgId, describe(failure));
    this.commit();
  }

  /** Runs a request that needs the connection; its refusal is thrown as a readable Error. */
  private async ask(op: ClientOp): Promise<ServerEvent> {
    if (!this.conn || this.link.kind !== 'online') throw new Error('Not connected to the server. Try again when the banner is gone.');
    try {
      return await this.conn.request(op);
    } catch (e) {
      throw e instanceof RequestFailed ? new Error(describe(e)) : e;
    }
  }

  // ----- message actions ------------------------------------------------------------------

  /** An edit or reaction of a message of the chat, sealed like a message of it (per device for a
   * person, one payload for a group), sealed again after STALE_DEVICES. */
  private async sealedAction(chatKey: ChatKey, type: 'MESSAGE_ACTION_TYPE_EDIT' | 'MESSAGE_ACTION_TYPE_REACT', content: Content): Promise<void> {
    const chat = this.state.chats[chatKey];
    for (let attempt = 0; ; attempt++) {
      try {
        const sealed = await (chat.kind === 'group' ? this.crypto.sealGroup(chat.groupId!, content) : this.crypto.sealDirect(chat.peerAccountId!, content));
        await this.ask({ action: { type, targetServerMsgId: (content as { target: U64 }).target, ...wireBody(sealed) } });
        return;
      } catch (e) {
        const stale = e instanceof RequestFailed ? e.code === 'ERROR_CODE_STALE_DEVICES' : (e as Error).message.includes('(STALE_DEVICES)');
        if (!(attempt < STALE_RETRIES && stale)) throw e;
      }
    }
  }

  async edit(chatKey: ChatKey, serverMsgId: U64, text: string): Promise<void> {
    await this.sealedAction(chatKey, 'MESSAGE_ACTION_TYPE_EDIT', { type: 'edit', target: serverMsgId, text });
    model.applyAction(this.state.chats[chatKey], { type: 'MESSAGE_ACTION_TYPE_EDIT', target: serverMsgId, fromAccountId: this.me.accountId, text, emoji: '' });
    this.commit();
  }

  async deleteForEveryone(chatKey: ChatKey, serverMsgId: U64): Promise<void> {
    await this.ask({ action: { type: 'MESSAGE_ACTION_TYPE_DELETE', targetServerMsgId: serverMsgId } });
    model.applyAction(this.state.chats[chatKey], { type: 'MESSAGE_ACTION_TYPE_DELETE', target: serverMsgId, fromAccountId: this.me.accountId, emoji: '' });
    this.commit();
  }

  /** Reacts (an empty emoji takes my reaction back). */
  async react(chatKey: ChatKey, serverMsgId: U64, emoji: string): Promise<void> {
    await this.sealedAction(chatKey, 'MESSAGE_ACTION_TYPE_REACT', { type: 'react', target: serverMsgId, emoji });
    model.applyAction(this.state.chats[chatKey], { type: 'MESSAGE_ACTION_TYPE_REACT', target: serverMsgId, fromAccountId: this.me.accountId, emoji });
    this.commit();
  }

  /** Forwards a text, or a photo or file with its caption, to up to 5 chats. Media is not
   * uploaded again: every copy names the same blobs (and its keys travel sealed). */
  async forward(message: model.Forwardable, chatKeys: ChatKey[]): Promise<void> {
    const chats = chatKeys.map((k) => this.state.chats[k]).filter(Boolean);
    const accounts = chats.filter((c) => c.kind === 'direct');
    const groups = chats.filter((c) => c.kind === 'group');
    const clientMsgId = crypto.randomUUID();
    const content: Content = message.media ? { type: 'media', media: message.media } : { type: 'text', text: message.text };
    const sealed = await this.crypto.sealForward(content, accounts.map((c) => c.peerAccountId!), groups.map((c) => c.groupId!));
    const mediaIds = message.media ? mediaIdsOf(message.media) : undefined;
    const event = await this.ask({ forward: { clientMsgId, ...sealed, mediaIds } });
    const results = event.forwardResult?.results ?? [];
    [...accounts, ...groups].forEach((chat, i) => {
      const r = results[i];
      if (r?.serverMsgId) {
        model.addForwarded(this.state, chat.key, message, { serverMsgId: r.serverMsgId, serverTsMs: r.serverTsMs ?? '0', clientMsgId: r.clientMsgId ?? `${clientMsgId}/${i}` }, this.me);
      }
    });
    this.commit();
  }

  // ----- receipts and typing --------------------------------------------------------------

  /** The person saw these messages: they stop counting as unread and READ is sent once. */
  markSeen(chatKey: ChatKey, serverMsgIds: U64[]): void {
    const chat = this.state.chats[chatKey];
    let changed = false;
    for (const id of serverMsgIds) {
      const m = model.findMessage(chat, id);
      if (m && !m.fromMe && !m.notice && !m.seen) {
        m.seen = true;
        changed = true;
      }
    }
    if (!changed) return;
    this.commit();
    this.flushReads();
  }

  private flushReads(): void {
    const conn = this.conn;
    if (!conn || this.link.kind !== 'online') return;
    for (const chat of Object.values(this.state.chats)) {
      const due = chat.messages.filter((m) => m.seen && !m.fromMe && !m.notice && !m.readReported && m.serverMsgId && !this.readsInFlight.has(m.serverMsgId));
      if (due.length === 0) continue;
      const bySender = new Map<U64, U64[]>();
      for (const m of due) {
        this.readsInFlight.add(m.serverMsgId!);
        const to = chat.kind === 'group' ? chat.groupId! : m.fromAccountId;
        bySender.set(to, [...(bySender.get(to) ?? []), m.serverMsgId!]);
      }
      for (const [to, ids] of bySender) {
        const op: ClientOp =
          chat.kind === 'group'
            ? { group: { read: { groupId: to, serverMsgIds: ids } } }
            : { receipt: { type: 'RECEIPT_TYPE_READ', toAccountId: to, serverMsgIds: ids } };
        conn.request(op).then(
          () => {
            for (const id of ids) {
              const m = model.findMessage(chat, id);
              if (m) m.readReported = true;
              this.readsInFlight.delete(id);
            }
            this.commit();
          },
          () => ids.forEach((id) => this.readsInFlight.delete(id)), // sent again after the next Welcome
        );
      }
    }
  }

  /** Tells the chat whether I am typing (repeated at most every 3 s; "stopped" once). */
  setTyping(chatKey: ChatKey, typing: boolean): void {
    const chat = this.state.chats[chatKey];
    if (!chat || !this.conn || this.link.kind !== 'online') return;
    const last = this.typingSent.get(chatKey);
    const now = Date.now();
    if (typing && last?.typing && now - last.atMs < TYPING_REPEAT_MS) return;
    if (!typing && !last?.typing) return;
    this.typingSent.set(chatKey, { typing, atMs: now });
    const target = chat.kind === 'group' ? { groupId: chat.groupId } : { toAccountId: chat.peerAccountId };
    this.conn.request({ typing: { ...target, typing } }).catch(() => {});
  }

  private onTyping(t: NonNullable<ServerEvent['typing']>): void {
    if (!isU64(t.fromAccountId) || t.fromAccountId === this.me.accountId) return;
    const key = isU64(t.groupId) && t.groupId !== '0' ? model.groupKey(t.groupId) : model.directKey(t.fromAccountId);
    const who = this.typing.get(key) ?? new Map<U64, number>();
    if (t.typing) {
      who.set(t.fromAccountId, Date.now() + TYPING_SHOWN_MS);
      setTimeout(() => this.notify(), TYPING_SHOWN_MS + 50);
    } else {
      who.delete(t.fromAccountId);
    }
    this.typing.set(key, who);
    this.notify();
  }

  /** Who is typing in a chat now. */
  typingIn(chatKey: ChatKey): U64[] {
    const now = Date.now();
    return [...(this.typing.get(chatKey) ?? new Map<U64, number>()).entries()].filter(([, until]) => until > now).map(([who]) => who);
  }

  // ----- presence and contacts ------------------------------------------------------------

  private subscribePresence(accountIds: U64[]): void {
    this.ask({ presenceSubscribe: { accountIds } })
      .then((e) => this.setPresence(e.presenceState?.accounts ?? []))
      .catch((e) => console.warn('iris: presence', e));
  }

  private setPresence(updates: { accountId?: U64; online?: boolean; lastSeenMs?: U64 }[]): void {
    for (const u of updates) {
      if (isU64(u.accountId)) this.presence.set(u.accountId, { online: !!u.online, lastSeenMs: Number(u.lastSeenMs ?? 0) });
    }
    this.notify();
  }

  async setPrivacy(privacy: PresencePrivacy): Promise<void> {
    await this.ask({ setPresence: { privacy } });
    this.showNotice('info', 'Privacy saved.');
  }

  /** Opens (or creates) the chat with a phone number, if it is registered (contact discovery). */
  async startChat(phone: string): Promise<ChatKey> {
    const event = await this.ask({ discover: { phones: [phone] } });
    const found = event.discoverResult?.registered?.find((c) => c.phone === phone) ?? event.discoverResult?.registered?.[0];
    if (!found?.accountId) throw new Error(`${phone} is not on Iris.`);
    if (found.accountId === this.me.accountId) throw new Error('That is your own number.');
    const chat = model.ensureDirect(this.state, found.accountId, found.phone ?? phone, Date.now());
    this.commit();
    this.ask({ contactsUpdate: { addAccountIds: [found.accountId] } }).catch(() => {});
    this.subscribePresence([found.accountId]);
    return chat.key;
  }

  // ----- groups ---------------------------------------------------------------------------

  private refreshGroupList(): void {
    this.ask({ group: { list: {} } })
      .then((e) => {
        for (const info of e.groupResult?.list?.groups ?? []) {
          if (!info.groupId) continue;
          const chat = model.ensureGroup(this.state, info.groupId, Number(info.createdAtMs ?? 0));
          model.mergeGroupInfo(chat, info, (info.members ?? []).length > 0);
          if (chat.group) chat.group.left = false;
          if ((info.members ?? []).length === 0) this.refreshGroup(info.groupId);
        }
        this.commit();
      })
      .catch((e) => console.warn('iris: group list', e));
  }

  refreshGroup(groupId: U64): void {
    this.ask({ group: { info: { groupId } } })
      .then((e) => {
        if (e.groupResult?.info) {
          model.mergeGroupInfo(model.ensureGroup(this.state, groupId), e.groupResult.info, true);
          this.commit();
        }
      })
      .catch(() => {}); // not a member any more: the group events say so
  }

  async createGroup(name: string, phones: string[], settings: GroupSettings): Promise<ChatKey> {
    const e = await this.ask({ group: { create: { name, memberPhones: phones, settings } } });
    const info = e.groupResult?.info;
    if (!info?.groupId) throw new Error('The server did not return the new group.');
    const chat = model.ensureGroup(this.state, info.groupId, Date.now());
    model.mergeGroupInfo(chat, info, true);
    this.commit();
    return chat.key;
  }

  async changeMembers(groupId: U64, action: GroupMemberAction, who: { phones?: string[]; accountIds?: U64[] }): Promise<void> {
    const e = await this.ask({ group: { members: { groupId, action, ...who } } });
    if (e.groupResult?.info) model.mergeGroupInfo(model.ensureGroup(this.state, groupId), e.groupResult.info, true);
    this.commit();
  }

  async updateGroup(groupId: U64, change: { name?: string; settings?: GroupSettings }): Promise<void> {
    const e = await this.ask({ group: { update: { groupId, ...change } } });
    if (e.groupResult?.info) model.mergeGroupInfo(model.ensureGroup(this.state, groupId), e.groupResult.info, true);
    this.commit();
  }

  /** Admits (or with `reject` declines) accounts asking to join (admins). */
  async answerJoinRequests(groupId: U64, accountIds: U64[], reject: boolean): Promise<void> {
    const e = await this.ask({ group: { approve: { groupId, accountIds, reject } } });
    if (e.groupResult?.info) model.mergeGroupInfo(model.ensureGroup(this.state, groupId), e.groupResult.info, true);
    this.commit();
  }

  /** Creates (or revokes) the invite link; returns its token ('' after a revoke). */
  async inviteLink(groupId: U64, revoke = false): Promise<string> {
    const e = await this.ask({ group: { invite: { groupId, revoke } } });
    return e.groupResult?.invite?.token ?? '';
  }

  /** Joins by invite token; the chat, or undefined while an admin must approve. */
  async joinGroup(token: string): Promise<ChatKey | undefined> {
    const e = await this.ask({ group: { join: { token } } });
    const info = e.groupResult?.info;
    if (!info?.groupId) {
      this.showNotice('info', 'Asked to join: an admin of the group must approve.');
      return undefined;
    }
    const chat = model.ensureGroup(this.state, info.groupId, Date.now());
    model.mergeGroupInfo(chat, info, true);
    if (chat.group) chat.group.left = false;
    this.commit();
    return chat.key;
  }

  async leaveGroup(groupId: U64): Promise<void> {
    await this.ask({ group: { leave: { groupId } } });
    const chat = this.state.chats[model.groupKey(groupId)];
    if (chat?.group) chat.group.left = true;
    this.commit();
  }

  // ----- media and keys -------------------------------------------------------------------

  /** Encrypts and uploads a photo or file, then sends it to the chat (the caption is `text`). */
  async sendMedia(chatKey: ChatKey, file: { name: string; type: string; bytes: Uint8Array }, text = ''): Promise<void> {
    const ref = await uploadFile(await this.accessToken(), file);
    const pending: PendingSend = { clientMsgId: crypto.randomUUID(), chatKey, text, media: { media: [ref], caption: text } };
    model.addOutgoing(this.state, pending, this.me, Date.now(), this.crypto.endToEnd);
    this.commit();
    if (this.conn && this.link.kind === 'online') this.transmit(this.conn, pending);
  }

  /** The bytes of a received (or sent) medium, decrypted and checked. */
  async mediaBytes(ref: MediaRef): Promise<Uint8Array> {
    return downloadMedia(await this.accessToken(), ref);
  }

  /** A photo's thumbnail, decrypted, if its sender made one. */
  async thumbnailBytes(ref: MediaRef): Promise<Uint8Array | undefined> {
    return downloadThumbnail(await this.accessToken(), ref);
  }

  /** The safety number of my conversation with `peer`, to compare out of band. */
  safetyNumber(peer: U64): Promise<string> {
    return this.crypto.safetyNumber(peer);
  }

  /** This device's fingerprint. */
  fingerprint(): Promise<string> {
    return this.crypto.fingerprint();
  }

  // ----- devices and logout ---------------------------------------------------------------

  async devices(): Promise<DeviceInfo[]> {
    return httpApi.devices(await this.accessToken());
  }

  async revokeDevice(deviceId: number): Promise<void> {
    await httpApi.revokeDevice(await this.accessToken(), deviceId);
  }

  /** Links waiting for this (primary) device's approval. */
  async pendingLinks(): Promise<PendingLinkInfo[]> {
    return httpApi.listLinks(await this.accessToken());
  }

  async approveLink(code: string): Promise<void> {
    await httpApi.approveLink(await this.accessToken(), code);
  }

  async refuseLink(code: string): Promise<void> {
    await httpApi.refuseLink(await this.accessToken(), code);
  }

  /**
   * Logs out: a linked device is revoked on the server (its inbox deleted); the primary device
   * cannot revoke itself, so it is only forgotten by this browser.
   */
  async logout(): Promise<void> {
    try {
      const token = await this.accessToken();
      const mine = (await httpApi.devices(token)).find((d) => d.device_id === this.me.deviceId);
      if (mine && !mine.primary) await httpApi.revokeDevice(token, this.me.deviceId);
    } catch (e) {
      if (!(e instanceof ApiFailure && (e.code === 'ERROR_CODE_DEVICE_REVOKED' || e.code === 'ERROR_CODE_UNAUTHENTICATED'))) throw e;
    }
    this.signOut('You logged out.');
  }

  private signOut(reason: string): void {
    this.stop();
    storage.forgetDevice(this.me.accountId, this.me.deviceId);
    forgetKeys(this.me.accountId, this.me.deviceId);
    this.onSignedOut(reason);
  }

  // ----- notices and change notification --------------------------------------------------

  showNotice(kind: Notice['kind'], text: string): void {
    const id = this.nextNoticeId++;
    this.notices = [...this.notices.filter((n) => n.text !== text), { id, kind, text }].slice(-4);
    setTimeout(() => this.dismissNotice(id), NOTICE_SHOWN_MS);
    this.notify();
  }

  dismissNotice(id: number): void {
    this.notices = this.notices.filter((n) => n.id !== id);
    this.notify();
  }

  private notify(): void {
    if (this.notifyQueued) return;
    this.notifyQueued = true;
    queueMicrotask(() => {
      this.notifyQueued = false;
      for (const listener of this.listeners) listener();
    });
  }
}

function wireBody(body: SealedBody): { payload?: string; perDevice?: DevicePayloads } {
  return 'payload' in body ? { payload: body.payload } : { perDevice: { payloads: body.perDevice } };
}

/** A refusal as a person reads it: the server's message, and its code. */
export function describe(e: RequestFailed): string {
  const code = e.code.replace(/^ERROR_CODE_/, '');
  const wait = e.wire.retryAfterMs ? ` Try again in ${Math.ceil(e.wire.retryAfterMs / 1000)} s.` : '';
  return `${e.wire.message || 'The server refused.'} (${code})${wait}`;
}
