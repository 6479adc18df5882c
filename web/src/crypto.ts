// The end-to-end encryption seam: every message body the client sends goes through `seal*`,
// and every body it receives through `open`. Nothing else in the client touches payload bytes.
//
// Today this is plaintext (UTF-8 text as one shared payload, the format `iris send` and
// `iris recv` use), and `endToEnd` is false so the UI says so. The E2E work (Olm pairwise with
// per-device payloads, Megolm for groups, from `@towns-protocol/olm`) replaces `plaintext` with
// an implementation of `PayloadCrypto` that keeps its sessions in the browser's storage; the
// callers already await every call and already send `perDevice` bodies when one is returned.

import type { Base64, U64 } from './proto';

/** What a send carries: one payload for every device, or one per device (pairwise sessions). */
export type SealedBody =
  | { payload: Base64 }
  | { perDevice: { accountId: U64; deviceId: number; payload: Base64 }[] };

/** Who sent a payload, for choosing the session that decrypts it. */
export interface PayloadOrigin {
  accountId: U64;
  deviceId: number;
  groupId?: U64;
}

export interface PayloadCrypto {
  /** Whether messages are end-to-end encrypted (shown in every conversation). */
  readonly endToEnd: boolean;
  /** Seals a 1:1 message for every device of the peer and my other devices. */
  sealDirect(peerAccountId: U64, text: string): Promise<SealedBody>;
  /** Seals a group message for every member device. */
  sealGroup(groupId: U64, text: string): Promise<SealedBody>;
  /** Seals the new text of an edit, or the body of a forward (one payload for every chat). */
  sealShared(text: string): Promise<Base64>;
  /** Opens a received payload; throws `UnreadablePayload` when it cannot. */
  open(origin: PayloadOrigin, payload: Base64): Promise<string>;
}

/** A payload that could not be decoded or decrypted (shown as such, never hidden). */
export class UnreadablePayload extends Error {}

/** UTF-8 text → standard base64. */
export function textToBase64(text: string): Base64 {
  const bytes = new TextEncoder().encode(text);
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/** Standard (or URL-safe, unpadded) base64 → UTF-8 text; throws `UnreadablePayload`. */
export function base64ToText(payload: Base64): string {
  try {
    let normal = payload.replace(/-/g, '+').replace(/_/g, '/');
    while (normal.length % 4 !== 0) normal += '=';
    const binary = atob(normal);
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new UnreadablePayload('not UTF-8 text');
  }
}

/** `alg`s of the SDK's envelopes (PROTOCOL.md section 9): an end-to-end encrypted payload, or the
 * placeholder for a device without keys. */
const ENVELOPE_ALGS = ['olm.v1', 'megolm.v1', 'none'];

/** Whether `text` is an E2E envelope (`{"v":1,"alg":…}`) rather than a message's text. */
export function isEnvelope(text: string): boolean {
  if (!text.startsWith('{')) return false;
  try {
    const v = JSON.parse(text) as { v?: unknown; alg?: unknown };
    return v.v === 1 && typeof v.alg === 'string' && ENVELOPE_ALGS.includes(v.alg);
  } catch {
    return false;
  }
}

/** No encryption: the server can read every message. What the CLI and SDK send end-to-end
 * encrypted (their default) arrives as an envelope this client cannot open: it is shown as
 * unreadable, never as its JSON. */
export const plaintext: PayloadCrypto = {
  endToEnd: false,
  async sealDirect(_peer, text) {
    return { payload: textToBase64(text) };
  },
  async sealGroup(_group, text) {
    return { payload: textToBase64(text) };
  },
  async sealShared(text) {
    return textToBase64(text);
  },
  async open(_origin, payload) {
    const text = base64ToText(payload);
    if (isEnvelope(text)) throw new UnreadablePayload('end-to-end encrypted; this client does not decrypt yet');
    return text;
  },
};
