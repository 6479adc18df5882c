// The end-to-end encryption seam: every message body the client sends goes through `seal*`,
// and every inbox item it receives through `open`. Nothing else in the client touches payload
// bytes. The implementation is `e2e.ts` (Olm pairwise with per-device payloads, Megolm for
// groups, libolm from `@towns-protocol/olm`, the SDK's formats: PROTOCOL.md section 9); this
// file holds the types both sides share (the byte helpers are in `encoding.ts`).

import type { MediaMessage } from './media';
import type { Base64, DevicePayloads, InboxItem, U64 } from './proto';

/** What a send carries: one payload for every device, or one per device (pairwise sessions). */
export type SealedBody =
  | { payload: Base64 }
  | { perDevice: { accountId: U64; deviceId: number; payload: Base64 }[] };

/** What a forward carries: one payload for every chat (plaintext), or one body per chat. */
export type SealedForward =
  | { payload: Base64; toAccountIds: U64[]; groupIds: U64[] }
  | { copies: { toAccountId?: U64; groupId?: U64; payload?: Base64; perDevice?: DevicePayloads }[] };

/** What a message (or an action on one) says, before it is sealed. */
export type Content =
  | { type: 'text'; text: string }
  | { type: 'media'; media: MediaMessage }
  | { type: 'edit'; target: U64; text: string }
  | { type: 'react'; target: U64; emoji: string };

/** An inbox item's body, once opened. */
export type Opened =
  | { kind: 'text'; text: string; encrypted: boolean }
  | { kind: 'media'; media: MediaMessage; encrypted: boolean }
  | { kind: 'edit'; text: string; encrypted: boolean }
  | { kind: 'react'; emoji: string; encrypted: boolean }
  /** Something only the crypto needed (a group's session key): nothing to show. */
  | { kind: 'control' }
  /** It could not be decrypted or failed a check: shown as such, never hidden. */
  | { kind: 'undecryptable'; reason: string };

export interface PayloadCrypto {
  /** Whether messages are end-to-end encrypted (shown in every conversation). */
  readonly endToEnd: boolean;
  /** Called after every Welcome: publishes what the key directory lacks. */
  connected(): Promise<void>;
  /** Reads the stored state again (another tab of this device used it meanwhile). */
  reload(): void;
  /** Seals a 1:1 content for every device of the peer and my other devices. */
  sealDirect(peerAccountId: U64, content: Content): Promise<SealedBody>;
  /** Seals a group content for every member device. */
  sealGroup(groupId: U64, content: Content): Promise<SealedBody>;
  /** Seals a forwarded text or media message for each chat. */
  sealForward(content: Content, toAccountIds: U64[], groupIds: U64[]): Promise<SealedForward>;
  /** Opens an inbox item's payload (messages and actions); acts on key upkeep items
   * (`keysLow`, `identityChange`). `undefined` for items without a payload. Never throws for a
   * bad payload: that is `undecryptable`. */
  open(item: InboxItem): Promise<Opened | undefined>;
  /** The safety number of my conversation with `peer` (60 digits, the SDK's). */
  safetyNumber(peerAccountId: U64): Promise<string>;
  /** This device's fingerprint (30 digits from its Ed25519 key). */
  fingerprint(): Promise<string>;
}

/** A refusal of the crypto (no keys, untrusted keys), as a send failure shows it. */
export class E2eFailure extends Error {}
