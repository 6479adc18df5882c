// The socket protocol's JSON mapping (`iris.v1.json`), as TypeScript types: the subset of
// crates/iris-proto/proto/iris/v1/iris.proto this client uses. Field names are lowerCamelCase,
// 64-bit integers are decimal strings, bytes are base64 strings, enums are their names, and
// default values may be left out (so almost every field is optional). Nothing here talks to the
// network; `connection.ts` sends and receives these shapes.

/** A u64 on the wire: a decimal string (JavaScript numbers lose precision past 2^53). */
export type U64 = string;
/** Bytes on the wire: standard base64. */
export type Base64 = string;

export interface ClientFrame {
  ops: ClientOp[];
}

export interface ClientOp {
  requestId?: U64;
  hello?: { versions: { major: number; minor?: number }[]; token: string; deviceId: number; resumeAfterSeq?: U64 };
  send?: SendMessage;
  ack?: { upToSeq: U64 };
  receipt?: { type: 'RECEIPT_TYPE_READ'; toAccountId: U64; serverMsgIds: U64[] };
  ping?: { clientTimeMs?: U64 };
  group?: GroupOp;
  presenceSubscribe?: { accountIds: U64[] };
  presenceUnsubscribe?: { accountIds: U64[] };
  setPresence?: { away?: boolean; privacy?: PresencePrivacy };
  typing?: { toAccountId?: U64; groupId?: U64; typing: boolean };
  action?: { type: MessageActionType; targetServerMsgId: U64; payload?: Base64; emoji?: string; perDevice?: DevicePayloads };
  forward?: {
    clientMsgId: string;
    payload?: Base64;
    toAccountIds?: U64[];
    groupIds?: U64[];
    copies?: { toAccountId?: U64; groupId?: U64; payload?: Base64; perDevice?: DevicePayloads }[];
    mediaIds?: string[];
  };
  keys?: KeysOp;
  contactsUpdate?: { addAccountIds?: U64[]; removeAccountIds?: U64[] };
  contactsList?: Record<string, never>;
  discover?: { phones: string[] };
}

export interface SendMessage {
  clientMsgId: string;
  toAccountId?: U64;
  toPhone?: string;
  payload?: Base64;
  perDevice?: DevicePayloads;
  replyToServerMsgId?: U64;
  mediaIds?: string[];
}

/** The key directory (PROTOCOL.md 9.1). */
export interface KeysOp {
  upload?: { identity?: IdentityKeys; oneTimeKeys?: SignedKey[]; fallbackKey?: SignedKey };
  count?: Record<string, never>;
  query?: { accountIds: U64[] };
  claim?: { accountIds?: U64[]; devices?: { accountId: U64; deviceId: number }[] };
}

export interface IdentityKeys {
  curve25519?: string;
  ed25519?: string;
  signature?: string;
}

export interface SignedKey {
  keyId?: string;
  key?: string;
  signature?: string;
}

export interface KeysResult {
  count?: { oneTimeKeys?: number; fallbackKey?: boolean; identity?: boolean; oneTimeKeysMax?: number };
  devices?: { devices?: { accountId?: U64; deviceId?: number; identity?: IdentityKeys }[] };
  bundles?: { bundles?: { accountId?: U64; deviceId?: number; identity?: IdentityKeys; key?: SignedKey; fallback?: boolean }[] };
}

export interface DevicePayloads {
  payloads: { accountId: U64; deviceId: number; payload: Base64 }[];
}

export interface GroupSettings {
  adminsOnlySend?: boolean;
  adminsOnlyEdit?: boolean;
  joinApproval?: boolean;
}

export type GroupMemberAction =
  | 'GROUP_MEMBER_ACTION_ADD'
  | 'GROUP_MEMBER_ACTION_REMOVE'
  | 'GROUP_MEMBER_ACTION_PROMOTE'
  | 'GROUP_MEMBER_ACTION_DEMOTE';

export interface GroupOp {
  create?: { name: string; description?: string; memberPhones?: string[]; settings?: GroupSettings };
  update?: { groupId: U64; name?: string; description?: string; settings?: GroupSettings };
  members?: { groupId: U64; action: GroupMemberAction; accountIds?: U64[]; phones?: string[] };
  leave?: { groupId: U64 };
  info?: { groupId: U64 };
  list?: Record<string, never>;
  invite?: { groupId: U64; revoke?: boolean };
  join?: { token: string };
  approve?: { groupId: U64; accountIds: U64[]; reject?: boolean };
  send?: { groupId: U64; clientMsgId: string; payload?: Base64; perDevice?: DevicePayloads; replyToServerMsgId?: U64; mediaIds?: string[] };
  read?: { groupId: U64; serverMsgIds: U64[] };
}

export type PresencePrivacy = 'PRESENCE_PRIVACY_EVERYONE' | 'PRESENCE_PRIVACY_NOBODY' | 'PRESENCE_PRIVACY_CONTACTS';
export type MessageActionType = 'MESSAGE_ACTION_TYPE_EDIT' | 'MESSAGE_ACTION_TYPE_DELETE' | 'MESSAGE_ACTION_TYPE_REACT';
export type GroupRole = 'GROUP_ROLE_MEMBER' | 'GROUP_ROLE_ADMIN' | 'GROUP_ROLE_CREATOR' | 'GROUP_ROLE_UNSPECIFIED';

export interface ServerFrame {
  events?: ServerEvent[];
}

export interface ServerEvent {
  requestId?: U64;
  welcome?: Welcome;
  sendResult?: SendResult;
  delivery?: { items?: InboxItem[] };
  error?: WireError;
  pong?: { clientTimeMs?: U64; serverTimeMs?: U64 };
  goAway?: { reconnectAfterMs?: number; reason?: string };
  receiptResult?: { serverTsMs?: U64 };
  groupResult?: GroupResult;
  presenceState?: { accounts?: PresenceUpdate[] };
  presence?: PresenceUpdate;
  typing?: { fromAccountId?: U64; fromDeviceId?: number; groupId?: U64; typing?: boolean };
  done?: Record<string, never>;
  actionResult?: { serverMsgId?: U64; serverTsMs?: U64 };
  forwardResult?: { results?: SendResult[] };
  contactList?: { contacts?: Contact[] };
  discoverResult?: { registered?: Contact[] };
  keysResult?: KeysResult;
}

export interface Welcome {
  heartbeatIntervalMs?: number;
  serverTimeMs?: U64;
  accountId?: U64;
  deviceId?: number;
  limits?: { maxPayloadBytes?: number };
}

export interface SendResult {
  status?: string;
  serverMsgId?: U64;
  serverTsMs?: U64;
  clientMsgId?: string;
  duplicate?: boolean;
}

export interface WireError {
  code?: string;
  message?: string;
  retryAfterMs?: number;
  fatal?: boolean;
}

export interface Contact {
  accountId?: U64;
  phone?: string;
}

export interface PresenceUpdate {
  accountId?: U64;
  online?: boolean;
  lastSeenMs?: U64;
}

export interface GroupMember {
  accountId?: U64;
  phone?: string;
  role?: GroupRole;
}

export interface GroupInfo {
  groupId?: U64;
  name?: string;
  description?: string;
  settings?: GroupSettings;
  version?: U64;
  members?: GroupMember[];
  pendingAccountIds?: U64[];
  createdAtMs?: U64;
}

export interface GroupResult {
  info?: GroupInfo;
  list?: { groups?: GroupInfo[] };
  invite?: { groupId?: U64; token?: string };
  sent?: SendResult;
  doneGroupId?: U64;
}

export interface InboxItem {
  seq?: U64;
  serverMsgId?: U64;
  serverTsMs?: U64;
  message?: {
    fromAccountId?: U64;
    fromDeviceId?: number;
    fromPhone?: string;
    toAccountId?: U64;
    toPhone?: string;
    payload?: Base64;
    clientMsgId?: string;
    replyToServerMsgId?: U64;
    forwarded?: boolean;
    mediaIds?: string[];
  };
  receipt?: {
    type?: string;
    fromAccountId?: U64;
    fromDeviceId?: number;
    peerAccountId?: U64;
    serverMsgIds?: U64[];
  };
  groupMessage?: {
    groupId?: U64;
    fromAccountId?: U64;
    fromDeviceId?: number;
    fromPhone?: string;
    payload?: Base64;
    clientMsgId?: string;
    replyToServerMsgId?: U64;
    forwarded?: boolean;
    mediaIds?: string[];
  };
  groupEvent?: {
    type?: string;
    groupId?: U64;
    byAccountId?: U64;
    accountIds?: U64[];
    info?: GroupInfo;
  };
  groupReceipt?: { type?: string; groupId?: U64; serverMsgIds?: U64[] };
  messageAction?: {
    type?: string;
    targetServerMsgId?: U64;
    fromAccountId?: U64;
    fromDeviceId?: number;
    peerAccountId?: U64;
    groupId?: U64;
    payload?: Base64;
    emoji?: string;
  };
  keysLow?: { oneTimeKeys?: number; fallbackKeyUsed?: boolean };
  identityChange?: { accountId?: U64; phone?: string; deviceId?: number; type?: string; identity?: IdentityKeys };
}

/** True when `s` is a valid wire u64 (a decimal string). */
export function isU64(s: unknown): s is U64 {
  return typeof s === 'string' && /^[0-9]{1,20}$/.test(s);
}

/** Compares two u64 strings numerically. */
export function compareU64(a: U64, b: U64): number {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}
