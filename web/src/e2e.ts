// End-to-end encryption in the browser, interoperating with the SDK and the CLI: Olm sessions
// pairwise per device (one ciphertext per device of the peer and my other devices), Megolm for
// groups (my outbound session's key shared pairwise with every member device, replaced when the
// member devices change or after 100 messages), keys published after every Welcome, identities
// pinned on first sight (trust on first use), safety numbers. libolm compiled to WebAssembly
// (`@towns-protocol/olm`, served by `iris serve` as /olm.wasm) does all the cryptography; the
// formats are PROTOCOL.md section 9, the same as `crates/iris-client/src/e2e/`.
//
// The state (the Olm account, sessions, pinned identities) lives in localStorage, every secret
// as a libolm pickle encrypted with a random key kept beside it: it protects against nothing
// that can read this origin's storage (that reader also has the refresh token, so it is the
// device anyway), and it is what the browser offers without a password. One lock serialises
// every change, so two sends or a send and a delivery never fork a ratchet; the state is saved
// before a ciphertext leaves and before an item is acked.

import Olm from '@towns-protocol/olm';
import type { Account, InboundGroupSession, OlmImpl, OutboundGroupSession, Session, Utility } from '@towns-protocol/olm';
import { RequestFailed } from './connection';
import { E2eFailure, type Content, type Opened, type PayloadCrypto, type SealedBody, type SealedForward } from './crypto';
import { base64ToBytes, base64ToText, bytesToBase64, parseExact, textToBase64 } from './encoding';
import { decodeMediaMessage, encodeMediaMessage } from './media';
import type { ClientOp, DevicePayloads, IdentityKeys, InboxItem, ServerEvent, SignedKey, U64 } from './proto';

/** Asks the server over the socket; a refusal throws `RequestFailed`. */
export type Ask = (op: ClientOp) => Promise<ServerEvent>;

/** One-time keys kept published (the server's pool may hold more). */
const ONE_TIME_KEYS_TARGET = 50;
/** Messages one outbound group session encrypts before it is replaced anyway. */
const MESSAGES_PER_SESSION_MAX = 100;
/** Accounts per key query (the server's bound). */
const ACCOUNTS_PER_QUERY = 32;
const OLM = 'olm.v1';
const MEGOLM = 'megolm.v1';
const NONE = 'none';
const storeKey = (accountId: U64, deviceId: number) => `iris.e2e.${accountId}.${deviceId}`;

/** A device, as `account.device`. */
type Addr = string;
const addr = (account: U64, device: number | undefined): Addr => `${account}.${device ?? 0}`;

interface Pinned {
  curve25519: string;
  ed25519: string;
}

interface Envelope {
  v: string | number;
  alg: string;
  sender_key?: string;
  type?: string | number;
  session_id?: string;
  body?: string;
}

/** The stored form (pickles and public metadata). */
interface StoredE2e {
  version: 1;
  pickleKey: string;
  account: string;
  sessions: Record<string, string[]>;
  devices: Record<Addr, Pinned>;
  outbound: Record<U64, { pickle: string; sharedWith: Addr[] }>;
  inbound: Record<string, { pickle: string; group: U64; sender: Addr }>;
}

let olmLoading: Promise<OlmImpl> | undefined;
/** Loads libolm once per page (its WebAssembly comes from this server, never elsewhere). */
function loadOlm(): Promise<OlmImpl> {
  olmLoading ??= Olm.initAsync({ locateFile: () => '/olm.wasm' });
  return olmLoading;
}

/** The signed strings of PROTOCOL.md 9.1 (`iris_proto::e2e`). */
export const signed = {
  identity: (curve25519: string, ed25519: string) => `iris.v1.identity|${curve25519}|${ed25519}`,
  oneTimeKey: (account: U64, device: number, keyId: string, key: string) => `iris.v1.otk|${account}|${device}|${keyId}|${key}`,
  fallbackKey: (account: U64, device: number, keyId: string, key: string) => `iris.v1.fallback|${account}|${device}|${keyId}|${key}`,
};

/** Six groups of five digits from the first 24 bytes of a SHA-256 (the SDK's `safety.rs`). */
async function digits(text: string): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
  const view = new DataView(hash.buffer);
  const groups: string[] = [];
  for (let i = 0; i < 6; i++) groups.push(String(view.getUint32(i * 4) % 100_000).padStart(5, '0'));
  return groups.join(' ');
}

/** The SDK's safety number: the lower account's 30 digits, then the other's, each over its
 * keyed devices' `account|device|ed25519` lines, sorted. */
export async function safetyNumber(a: U64, b: U64, devices: { account: U64; device: number; ed25519: string }[]): Promise<string> {
  const [low, high] = BigInt(a) <= BigInt(b) ? [a, b] : [b, a];
  const of = (account: U64) =>
    digits(devices.filter((d) => d.account === account).map((d) => `${d.account}|${d.device}|${d.ed25519}\n`).sort().join(''));
  return `${await of(low)} ${await of(high)}`;
}

/** The content JSON of PROTOCOL.md 9.2, written by hand so ids keep every digit. */
function contentJson(me: { accountId: U64; deviceId: number }, toAccount: U64, group: U64, body: string): string {
  return `{"v":1,"sender":{"account":${me.accountId},"device":${me.deviceId}},"to_account":${toAccount},"group":${group},${body}}`;
}

function bodyJson(content: Content): string {
  const s = JSON.stringify;
  switch (content.type) {
    case 'text':
      return `"type":"text","text":${s(content.text)}`;
    case 'edit':
      return `"type":"edit","target":${s(content.target)},"text":${s(content.text)}`;
    case 'react':
      return `"type":"react","target":${s(content.target)},"emoji":${s(content.emoji)}`;
    case 'media':
      return `"type":"media","media":${s(bytesToBase64(encodeMediaMessage(content.media)))}`;
  }
}

/** A failure of the directory or the crypto, as a send shows it. */
function untrusted(device: Addr, why: string): E2eFailure {
  return new E2eFailure(`Untrusted keys of device ${device}: ${why}`);
}

export class E2eCrypto implements PayloadCrypto {
  readonly endToEnd = true;
  private olm!: OlmImpl;
  private utility!: Utility;
  private pickleKey = '';
  private account!: Account;
  private sessions = new Map<string, Session[]>();
  private devices = new Map<Addr, Pinned>();
  private outbound = new Map<U64, { session: OutboundGroupSession; sharedWith: Set<Addr> }>();
  private inbound = new Map<string, { session: InboundGroupSession; group: U64; sender: Addr }>();
  private ready: Promise<void>;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private me: { accountId: U64; deviceId: number },
    private ask: Ask,
  ) {
    this.ready = this.load();
  }

  private async load(): Promise<void> {
    this.olm = await loadOlm();
    this.utility = new this.olm.Utility();
    const raw = localStorage.getItem(storeKey(this.me.accountId, this.me.deviceId));
    const stored = raw ? (JSON.parse(raw) as StoredE2e) : undefined;
    if (!stored || stored.version !== 1) {
      const key = new Uint8Array(32);
      crypto.getRandomValues(key);
      this.pickleKey = bytesToBase64(key);
      this.account = new this.olm.Account();
      this.account.create();
      this.save();
      return;
    }
    this.pickleKey = stored.pickleKey;
    this.account = new this.olm.Account();
    this.account.unpickle(this.pickleKey, stored.account);
    for (const [key, pickles] of Object.entries(stored.sessions)) {
      this.sessions.set(key, pickles.map((p) => this.unpickle(new this.olm.Session(), p)));
    }
    for (const [a, p] of Object.entries(stored.devices)) this.devices.set(a, p);
    for (const [g, o] of Object.entries(stored.outbound)) {
      this.outbound.set(g, { session: this.unpickle(new this.olm.OutboundGroupSession(), o.pickle), sharedWith: new Set(o.sharedWith) });
    }
    for (const [id, i] of Object.entries(stored.inbound)) {
      this.inbound.set(id, { session: this.unpickle(new this.olm.InboundGroupSession(), i.pickle), group: i.group, sender: i.sender });
    }
  }

  reload(): void {
    this.locked(async () => {
      this.sessions.forEach((list) => list.forEach((s) => s.free()));
      this.outbound.forEach((o) => o.session.free());
      this.inbound.forEach((i) => i.session.free());
      this.account.free();
      this.sessions.clear();
      this.devices.clear();
      this.outbound.clear();
      this.inbound.clear();
      await this.load();
    }).catch((e) => console.warn('iris: reloading keys', e));
  }

  private unpickle<T extends { unpickle(key: string, pickle: string): void }>(object: T, pickle: string): T {
    object.unpickle(this.pickleKey, pickle);
    return object;
  }

  /** Writes the whole state; throws when the browser refuses (nothing then leaves or is acked). */
  private save(): void {
    const k = this.pickleKey;
    const stored: StoredE2e = {
      version: 1,
      pickleKey: k,
      account: this.account.pickle(k),
      sessions: Object.fromEntries([...this.sessions].map(([key, list]) => [key, list.map((s) => s.pickle(k))])),
      devices: Object.fromEntries(this.devices),
      outbound: Object.fromEntries([...this.outbound].map(([g, o]) => [g, { pickle: o.session.pickle(k), sharedWith: [...o.sharedWith] }])),
      inbound: Object.fromEntries([...this.inbound].map(([id, i]) => [id, { pickle: i.session.pickle(k), group: i.group, sender: i.sender }])),
    };
    localStorage.setItem(storeKey(this.me.accountId, this.me.deviceId), JSON.stringify(stored));
  }

  /** Runs `fn` alone: one ratchet step at a time. */
  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(() => this.ready).then(fn);
    this.chain = run.catch(() => {});
    return run;
  }

  private identityKeys(): Pinned {
    return JSON.parse(this.account.identity_keys()) as Pinned;
  }

  // ----- the key directory ----------------------------------------------------------------

  connected(): Promise<void> {
    return this.locked(() => this.publish(false));
  }

  /** Uploads what the directory lacks: the identity, one-time keys up to the target, a fallback
   * key (a new one when `rotateFallback`). Private halves are saved before the public ones leave. */
  private async publish(rotateFallback: boolean): Promise<void> {
    const count = (await this.ask({ keys: { count: {} } })).keysResult?.count ?? {};
    const { accountId, deviceId } = this.me;
    const upload: { identity?: IdentityKeys; oneTimeKeys: SignedKey[]; fallbackKey?: SignedKey } = { oneTimeKeys: [] };
    if (!count.identity) {
      const keys = this.identityKeys();
      upload.identity = { curve25519: keys.curve25519, ed25519: keys.ed25519, signature: this.account.sign(signed.identity(keys.curve25519, keys.ed25519)) };
    }
    const target = Math.min(ONE_TIME_KEYS_TARGET, Math.max(count.oneTimeKeysMax ?? ONE_TIME_KEYS_TARGET, 1));
    const unpublished = Object.entries((JSON.parse(this.account.one_time_keys()) as { curve25519: Record<string, string> }).curve25519);
    const have = (count.oneTimeKeys ?? 0) + unpublished.length;
    if (have < target) this.account.generate_one_time_keys(target - have);
    if (!count.fallbackKey || rotateFallback) this.account.generate_fallback_key();
    for (const [keyId, key] of Object.entries((JSON.parse(this.account.one_time_keys()) as { curve25519: Record<string, string> }).curve25519)) {
      upload.oneTimeKeys.push({ keyId, key, signature: this.account.sign(signed.oneTimeKey(accountId, deviceId, keyId, key)) });
    }
    const fallback = Object.entries((JSON.parse(this.account.unpublished_fallback_key()) as { curve25519?: Record<string, string> }).curve25519 ?? {});
    for (const [keyId, key] of fallback) {
      upload.fallbackKey = { keyId, key, signature: this.account.sign(signed.fallbackKey(accountId, deviceId, keyId, key)) };
    }
    if (!upload.identity && upload.oneTimeKeys.length === 0 && !upload.fallbackKey) return;
    this.save();
    await this.ask({ keys: { upload } });
    this.account.mark_keys_as_published();
    this.save();
  }

  /** Every device (and identity) of `accounts` but mine. */
  private async devicesOf(accounts: U64[]): Promise<{ accountId: U64; deviceId: number; identity?: IdentityKeys }[]> {
    const out = [];
    const unique = [...new Set(accounts)];
    for (let i = 0; i < unique.length; i += ACCOUNTS_PER_QUERY) {
      const e = await this.ask({ keys: { query: { accountIds: unique.slice(i, i + ACCOUNTS_PER_QUERY) } } });
      for (const d of e.keysResult?.devices?.devices ?? []) {
        out.push({ accountId: d.accountId ?? '0', deviceId: d.deviceId ?? 0, identity: d.identity });
      }
    }
    return out.filter((d) => !(d.accountId === this.me.accountId && d.deviceId === this.me.deviceId));
  }

  private verify(ed25519: string, message: string, signature: string): boolean {
    try {
      this.utility.ed25519_verify(ed25519, message, signature);
      return true;
    } catch {
      return false;
    }
  }

  /** Trust on first use: pins `identity` the first time (after its self-signature checks),
   * afterwards insists on it. */
  private pin(device: Addr, identity: IdentityKeys): Pinned {
    const seen = { curve25519: identity.curve25519 ?? '', ed25519: identity.ed25519 ?? '' };
    if (!this.verify(seen.ed25519, signed.identity(seen.curve25519, seen.ed25519), identity.signature ?? '')) {
      throw untrusted(device, 'identity signature does not verify');
    }
    const pinned = this.devices.get(device);
    if (pinned && (pinned.curve25519 !== seen.curve25519 || pinned.ed25519 !== seen.ed25519)) {
      throw untrusted(device, 'its identity keys differ from the ones pinned for it');
    }
    if (!pinned) this.devices.set(device, seen);
    return seen;
  }

  /** The pinned identity of a device, asking the directory (and pinning) the first time. */
  private async pinned(device: Addr): Promise<Pinned> {
    const known = this.devices.get(device);
    if (known) return known;
    const [account, id] = device.split('.');
    const e = await this.ask({ keys: { query: { accountIds: [account] } } });
    const found = (e.keysResult?.devices?.devices ?? []).find((d) => String(d.deviceId ?? 0) === id)?.identity;
    if (!found) throw untrusted(device, 'the directory has no identity keys for it');
    const pinned = this.pin(device, found);
    this.save();
    return pinned;
  }

  // ----- sealing --------------------------------------------------------------------------

  /** Encrypts `plaintext` for each of `devices` (claiming keys for new sessions first). */
  private async encryptFor(devices: { accountId: U64; deviceId: number; identity?: IdentityKeys }[], plaintext: string): Promise<DevicePayloads['payloads']> {
    const need = [];
    for (const d of devices) {
      if (!d.identity) continue;
      const pinned = this.pin(addr(d.accountId, d.deviceId), d.identity);
      if (!(this.sessions.get(pinned.curve25519)?.length)) need.push({ accountId: d.accountId, deviceId: d.deviceId });
    }
    if (need.length > 0) {
      const e = await this.ask({ keys: { claim: { devices: need } } });
      for (const b of e.keysResult?.bundles?.bundles ?? []) {
        if (!b.identity || !b.key) continue;
        const device = addr(b.accountId ?? '0', b.deviceId);
        const pinned = this.pin(device, b.identity);
        const message = b.fallback
          ? signed.fallbackKey(b.accountId ?? '0', b.deviceId ?? 0, b.key.keyId ?? '', b.key.key ?? '')
          : signed.oneTimeKey(b.accountId ?? '0', b.deviceId ?? 0, b.key.keyId ?? '', b.key.key ?? '');
        if (!this.verify(pinned.ed25519, message, b.key.signature ?? '')) throw untrusted(device, 'claimed key signature does not verify');
        const session = new this.olm.Session();
        session.create_outbound(this.account, pinned.curve25519, b.key.key ?? '');
        this.sessions.set(pinned.curve25519, [...(this.sessions.get(pinned.curve25519) ?? []), session]);
      }
    }
    const senderKey = this.identityKeys().curve25519;
    const payloads = devices.map((d) => {
      const list = d.identity ? this.sessions.get(d.identity.curve25519 ?? '') : undefined;
      const session = list?.[list.length - 1];
      let envelope = `{"v":1,"alg":"${NONE}"}`;
      if (session) {
        const m = session.encrypt(plaintext);
        envelope = JSON.stringify({ v: 1, alg: OLM, sender_key: senderKey, type: m.type, body: m.body });
      }
      return { accountId: d.accountId, deviceId: d.deviceId, payload: textToBase64(envelope) };
    });
    // Ratchets moved: stored before anything leaves.
    this.save();
    return payloads;
  }

  /** One payload per device of `peer` and my other devices. */
  private async perDevice(peer: U64, plaintext: string): Promise<DevicePayloads['payloads']> {
    const devices = await this.devicesOf([peer, this.me.accountId]);
    if (peer !== this.me.accountId && !devices.some((d) => d.accountId === peer && d.identity)) {
      throw new E2eFailure('This person has no device with end-to-end keys: nothing they could read can be sent.');
    }
    return this.encryptFor(devices, plaintext);
  }

  sealDirect(peer: U64, content: Content): Promise<SealedBody> {
    return this.locked(async () => {
      const payloads = await this.perDevice(peer, contentJson(this.me, peer, '0', bodyJson(content)));
      return payloads.length === 0 ? { payload: textToBase64(`{"v":1,"alg":"${NONE}"}`) } : { perDevice: payloads };
    });
  }

  sealGroup(groupId: U64, content: Content): Promise<SealedBody> {
    return this.locked(async () => ({ payload: await this.groupPayload(groupId, contentJson(this.me, '0', groupId, bodyJson(content))) }));
  }

  /** The Megolm envelope of `plaintext` for the group, sharing a new session key first when the
   * member devices are not those the current one went to. */
  private async groupPayload(groupId: U64, plaintext: string): Promise<string> {
    const info = (await this.ask({ group: { info: { groupId } } })).groupResult?.info;
    const accounts = (info?.members ?? []).map((m) => m.accountId ?? '0');
    const devices = await this.devicesOf(accounts);
    const members = new Set(devices.map((d) => addr(d.accountId, d.deviceId)));
    const current = this.outbound.get(groupId);
    const usable =
      current && current.session.message_index() < MESSAGES_PER_SESSION_MAX && current.sharedWith.size === members.size && [...members].every((m) => current.sharedWith.has(m));
    if (!usable) {
      const session = new this.olm.OutboundGroupSession();
      session.create();
      const key = contentJson(this.me, '0', groupId, `"type":"room_key","session_id":${JSON.stringify(session.session_id())},"session_key":${JSON.stringify(session.session_key())}`);
      const payloads = await this.encryptFor(devices, key);
      await this.ask({ group: { send: { groupId, clientMsgId: crypto.randomUUID(), perDevice: { payloads } } } });
      this.outbound.get(groupId)?.session.free();
      this.outbound.set(groupId, { session, sharedWith: members });
      this.save();
    }
    const outbound = this.outbound.get(groupId)!;
    const body = outbound.session.encrypt(plaintext);
    this.save();
    return textToBase64(JSON.stringify({ v: 1, alg: MEGOLM, sender_key: this.identityKeys().curve25519, session_id: outbound.session.session_id(), body }));
  }

  sealForward(content: Content, toAccountIds: U64[], groupIds: U64[]): Promise<SealedForward> {
    return this.locked(async () => {
      const copies: Extract<SealedForward, { copies: unknown }>['copies'] = [];
      const body = bodyJson(content);
      for (const to of [...new Set(toAccountIds)]) {
        copies.push({ toAccountId: to, perDevice: { payloads: await this.perDevice(to, contentJson(this.me, to, '0', body)) } });
      }
      for (const g of [...new Set(groupIds)]) {
        copies.push({ groupId: g, payload: await this.groupPayload(g, contentJson(this.me, '0', g, body)) });
      }
      return { copies };
    });
  }

  // ----- opening --------------------------------------------------------------------------

  open(item: InboxItem): Promise<Opened | undefined> {
    return this.locked(async () => {
      try {
        return await this.openItem(item);
      } catch (e) {
        if (e instanceof RequestFailed && e.code === 'CLIENT_NOT_CONNECTED') throw e; // try again on the next delivery
        return { kind: 'undecryptable', reason: (e as Error).message } as Opened;
      }
    });
  }

  private async openItem(item: InboxItem): Promise<Opened | undefined> {
    if (item.keysLow) {
      await this.publish(!!item.keysLow.fallbackKeyUsed);
      return undefined;
    }
    if (item.identityChange) {
      this.applyIdentityChange(item.identityChange);
      return undefined;
    }
    const m = item.message;
    if (m) {
      const from = addr(m.fromAccountId ?? '0', m.fromDeviceId);
      const peer = m.fromAccountId === this.me.accountId ? (m.toAccountId ?? '0') : (m.fromAccountId ?? '0');
      return this.openPayload(m.payload ?? '', (m.mediaIds ?? []).length > 0, from, peer, '0', undefined);
    }
    const g = item.groupMessage;
    if (g) {
      return this.openPayload(g.payload ?? '', (g.mediaIds ?? []).length > 0, addr(g.fromAccountId ?? '0', g.fromDeviceId), '0', g.groupId ?? '0', undefined);
    }
    const a = item.messageAction;
    if (a && a.payload) {
      const from = addr(a.fromAccountId ?? '0', a.fromDeviceId);
      const group = a.groupId && a.groupId !== '0' ? a.groupId : '0';
      const opened = await this.openPayload(a.payload, false, from, group === '0' ? (a.peerAccountId ?? '0') : '0', group, a.targetServerMsgId ?? '0');
      // A plaintext edit is its text.
      return opened.kind === 'text' && !opened.encrypted && a.type === 'MESSAGE_ACTION_TYPE_EDIT' ? { kind: 'edit', text: opened.text, encrypted: false } : opened;
    }
    return undefined;
  }

  /** Decrypts and checks one payload that `from` sent in the conversation (`peer` from my
   * side, or `group`); with `action` the content must be an action on that message. */
  private async openPayload(payload: string, hasMedia: boolean, from: Addr, peer: U64, group: U64, action: U64 | undefined): Promise<Opened> {
    const text = base64ToText(payload);
    const envelope = text?.startsWith('{') ? (tryParse(text) as Envelope | undefined) : undefined;
    if (!envelope || String(envelope.v) !== '1' || typeof envelope.alg !== 'string') {
      // Plaintext (`--plaintext` clients): a media message's payload is its MediaMessage.
      if (hasMedia) return { kind: 'media', media: decodeMediaMessage(base64ToBytes(payload)), encrypted: false };
      if (text === undefined) return { kind: 'undecryptable', reason: 'not UTF-8 text' };
      return { kind: 'text', text, encrypted: false };
    }
    let plaintext: string;
    if (envelope.alg === OLM || envelope.alg === MEGOLM) {
      const pinned = await this.pinned(from);
      if (pinned.curve25519 !== envelope.sender_key) throw new Error("the sender key is not the sending device's identity key");
      plaintext = envelope.alg === OLM ? this.decryptOlm(envelope) : this.decryptMegolm(envelope, from, group);
      this.save();
    } else if (envelope.alg === NONE) {
      throw new Error('sent to this device as a device without keys');
    } else {
      throw new Error(`unknown algorithm ${envelope.alg}`);
    }
    const content = tryParse(plaintext) as Record<string, unknown> & { sender?: { account?: string; device?: string } } | undefined;
    if (!content || String(content.v) !== '1') throw new Error('not a content');
    const sender = addr(String(content.sender?.account ?? ''), Number(content.sender?.device ?? -1));
    const toAccount = String(content.to_account ?? '0');
    const contentGroup = String(content.group ?? '0');
    const mySidePeer = String(content.sender?.account) === this.me.accountId ? toAccount : String(content.sender?.account);
    const conversationOk = group === '0' ? contentGroup === '0' && (peer === '0' || mySidePeer === peer) : contentGroup === group;
    if (sender !== from || !conversationOk) throw new Error('the content names another sender or conversation');
    const type = content.type;
    if (action === undefined && type === 'text') return { kind: 'text', text: String(content.text ?? ''), encrypted: true };
    if (action === undefined && type === 'media') {
      return { kind: 'media', media: decodeMediaMessage(base64ToBytes(String(content.media ?? ''))), encrypted: true };
    }
    if (action === undefined && type === 'room_key' && group !== '0') {
      const session = new this.olm.InboundGroupSession();
      session.create(String(content.session_key ?? ''));
      if (session.session_id() !== content.session_id) {
        session.free();
        throw new Error('the room key does not match its session id');
      }
      const id = `${envelope.sender_key}|${session.session_id()}`;
      if (!this.inbound.has(id)) this.inbound.set(id, { session, group, sender: from });
      this.save();
      return { kind: 'control' };
    }
    if (action !== undefined && String(content.target) === action) {
      if (type === 'edit') return { kind: 'edit', text: String(content.text ?? ''), encrypted: true };
      if (type === 'react') return { kind: 'react', emoji: String(content.emoji ?? ''), encrypted: true };
    }
    throw new Error('content of the wrong kind for this item');
  }

  /** Olm: the session that decrypts becomes the one replies use; a pre-key message no session
   * knows starts a new one (using up my one-time key). */
  private decryptOlm(envelope: Envelope): string {
    const senderKey = envelope.sender_key ?? '';
    const type = Number(envelope.type);
    const body = envelope.body ?? '';
    const sessions = this.sessions.get(senderKey) ?? [];
    for (let i = sessions.length - 1; i >= 0; i--) {
      if (type === 0 && !sessions[i].matches_inbound_from(senderKey, body)) continue;
      try {
        const plaintext = sessions[i].decrypt(type, body);
        const [session] = sessions.splice(i, 1);
        sessions.push(session);
        this.sessions.set(senderKey, sessions);
        return plaintext;
      } catch {
        // another session, or none
      }
    }
    if (type !== 0) throw new Error('no session with the sender decrypts it');
    const session = new this.olm.Session();
    try {
      session.create_inbound_from(this.account, senderKey, body);
    } catch (e) {
      session.free();
      throw new Error(`cannot start a session: ${(e as Error).message ?? e}`);
    }
    this.account.remove_one_time_keys(session);
    const plaintext = session.decrypt(type, body);
    this.sessions.set(senderKey, [...sessions, session]);
    return plaintext;
  }

  /** Megolm: only the device that shared the session, in its group, may have sent it. */
  private decryptMegolm(envelope: Envelope, from: Addr, group: U64): string {
    const inbound = this.inbound.get(`${envelope.sender_key}|${envelope.session_id}`);
    if (!inbound) throw new Error('no key for this group session (not shared with this device)');
    if (inbound.sender !== from || inbound.group !== group) throw new Error('the group session belongs to another sender or group');
    return inbound.session.decrypt(envelope.body ?? '').plaintext;
  }

  private applyIdentityChange(change: NonNullable<InboxItem['identityChange']>): void {
    const device = addr(change.accountId ?? '0', change.deviceId);
    if (change.type === 'IDENTITY_CHANGE_TYPE_DEVICE_ADDED' && change.identity) {
      this.pin(device, change.identity);
    } else if (change.type === 'IDENTITY_CHANGE_TYPE_DEVICE_REMOVED') {
      const pinned = this.devices.get(device);
      if (pinned) {
        this.devices.delete(device);
        this.sessions.get(pinned.curve25519)?.forEach((s) => s.free());
        this.sessions.delete(pinned.curve25519);
      }
    }
    this.save();
  }

  // ----- numbers to compare ---------------------------------------------------------------

  async fingerprint(): Promise<string> {
    await this.ready;
    return digits(this.identityKeys().ed25519);
  }

  safetyNumber(peer: U64): Promise<string> {
    return this.locked(async () => {
      const devices = await this.ask({ keys: { query: { accountIds: [...new Set([peer, this.me.accountId])] } } });
      const keyed = [];
      for (const d of devices.keysResult?.devices?.devices ?? []) {
        if (!d.identity) continue;
        const pinned = this.pin(addr(d.accountId ?? '0', d.deviceId), d.identity);
        keyed.push({ account: d.accountId ?? '0', device: d.deviceId ?? 0, ed25519: pinned.ed25519 });
      }
      this.save();
      return safetyNumber(this.me.accountId, peer, keyed);
    });
  }
}

function tryParse(text: string): unknown {
  try {
    return parseExact(text);
  } catch {
    return undefined;
  }
}

/** Forgets a device's keys (logout). */
export function forgetKeys(accountId: U64, deviceId: number): void {
  localStorage.removeItem(storeKey(accountId, deviceId));
}
