// Media: photos and files. Blobs never ride the message path (DESIGN.md principle 8): the file
// is encrypted here with a fresh 32-byte key, exactly as the SDK does (`media/crypto.rs`:
// `iv ‖ AES-256-CTR(file) ‖ HMAC-SHA256(iv ‖ ciphertext)`, keys derived by HMAC-SHA256 from the
// media key), uploaded over the HTTP media API (PROTOCOL.md 6a), and the message carries a
// `MediaMessage` (protobuf, with the key) inside its end-to-end encrypted content; the server
// sees only the blob's id. Received media is downloaded by signed URL, its MAC and hash checked,
// and shown as an image or offered as a download. WebCrypto does the cryptography.

import { bytesToBase64, base64ToBytes } from './encoding';

/** `MediaKind` of iris.proto. */
export const MEDIA_KIND = { image: 1, voice: 2, video: 3, document: 4, thumbnail: 5 } as const;
const KIND_NAMES: Record<number, string> = { 1: 'image', 2: 'voice', 3: 'video', 4: 'document', 5: 'thumbnail' };

/** `MediaRef` of iris.proto; bytes as standard base64. */
export interface MediaRef {
  mediaId: string;
  kind: number;
  sizeBytes: number;
  sha256: string;
  mime: string;
  width: number;
  height: number;
  durationMs: number;
  thumbnailId: string;
  key: string;
  thumbnailKey: string;
  fileName: string;
}

/** `MediaMessage` of iris.proto. */
export interface MediaMessage {
  media: MediaRef[];
  caption: string;
}

/** The blobs a message with `media` names in `media_ids` (each file and its thumbnail), so
 * that a forward holds references on the same blobs as the original. */
export function mediaIdsOf(media: MediaMessage): string[] {
  return media.media.flatMap((r) => [r.mediaId, r.thumbnailId]).filter((id) => id !== '');
}

/** Whether this client can send and show media. */
export const mediaSupported = true;

/** The largest file the browser encrypts in memory (the server's image and voice limits are
 * 16 MiB, documents more; a browser holds the whole file). */
export const MEDIA_BYTES_MAX = 64 * 1024 * 1024;

// ----- protobuf (the two messages only) -----------------------------------------------------

class Writer {
  private parts: number[] = [];
  varint(n: number): void {
    let v = BigInt(n);
    while (v > 0x7fn) {
      this.parts.push(Number((v & 0x7fn) | 0x80n));
      v >>= 7n;
    }
    this.parts.push(Number(v));
  }
  tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }
  uint(field: number, n: number): void {
    if (!n) return;
    this.tag(field, 0);
    this.varint(n);
  }
  bytes(field: number, b: Uint8Array): void {
    if (b.length === 0) return;
    this.tag(field, 2);
    this.varint(b.length);
    for (const x of b) this.parts.push(x);
  }
  string(field: number, s: string): void {
    this.bytes(field, new TextEncoder().encode(s));
  }
  finish(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

/** Reads fields; unknown ones are skipped (forward compatible). */
function* fields(buf: Uint8Array): Generator<{ field: number; wire: number; value: number; bytes: Uint8Array }> {
  let pos = 0;
  const varint = () => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (pos >= buf.length) throw new Error('truncated protobuf');
      const b = buf[pos++];
      result |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return Number(result);
      shift += 7n;
      if (shift > 63n) throw new Error('bad varint');
    }
  };
  while (pos < buf.length) {
    const key = varint();
    const field = key >>> 3;
    const wire = key & 7;
    if (wire === 0) yield { field, wire, value: varint(), bytes: new Uint8Array() };
    else if (wire === 2) {
      const len = varint();
      if (pos + len > buf.length) throw new Error('truncated protobuf');
      yield { field, wire, value: 0, bytes: buf.subarray(pos, pos + len) };
      pos += len;
    } else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else throw new Error('unsupported protobuf wire type');
  }
}

export function encodeMediaMessage(m: MediaMessage): Uint8Array {
  const w = new Writer();
  for (const r of m.media) {
    const x = new Writer();
    x.string(1, r.mediaId);
    x.uint(2, r.kind);
    x.uint(3, r.sizeBytes);
    x.bytes(4, base64ToBytes(r.sha256));
    x.string(5, r.mime);
    x.uint(6, r.width);
    x.uint(7, r.height);
    x.uint(8, r.durationMs);
    x.string(9, r.thumbnailId);
    x.bytes(10, base64ToBytes(r.key));
    x.bytes(11, base64ToBytes(r.thumbnailKey));
    x.string(12, r.fileName);
    w.bytes(1, x.finish());
  }
  w.string(2, m.caption);
  return w.finish();
}

export function decodeMediaMessage(buf: Uint8Array): MediaMessage {
  const text = (b: Uint8Array) => new TextDecoder('utf-8', { fatal: true }).decode(b);
  const out: MediaMessage = { media: [], caption: '' };
  for (const f of fields(buf)) {
    if (f.field === 2 && f.wire === 2) out.caption = text(f.bytes);
    if (f.field !== 1 || f.wire !== 2) continue;
    const r: MediaRef = { mediaId: '', kind: 0, sizeBytes: 0, sha256: '', mime: '', width: 0, height: 0, durationMs: 0, thumbnailId: '', key: '', thumbnailKey: '', fileName: '' };
    for (const g of fields(f.bytes)) {
      switch (g.field) {
        case 1: r.mediaId = text(g.bytes); break;
        case 2: r.kind = g.value; break;
        case 3: r.sizeBytes = g.value; break;
        case 4: r.sha256 = bytesToBase64(g.bytes); break;
        case 5: r.mime = text(g.bytes); break;
        case 6: r.width = g.value; break;
        case 7: r.height = g.value; break;
        case 8: r.durationMs = g.value; break;
        case 9: r.thumbnailId = text(g.bytes); break;
        case 10: r.key = bytesToBase64(g.bytes); break;
        case 11: r.thumbnailKey = bytesToBase64(g.bytes); break;
        case 12: r.fileName = text(g.bytes); break;
      }
    }
    out.media.push(r);
  }
  return out;
}

// ----- encryption (the SDK's format) --------------------------------------------------------

/** WebCrypto wants plain ArrayBuffer views; ours always are. */
const bs = (b: Uint8Array) => b as Uint8Array<ArrayBuffer>;

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, '0')).join('');

async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bs(data)));
}

async function hmac(key: Uint8Array, data: Uint8Array): Promise<Uint8Array> {
  const k = await crypto.subtle.importKey('raw', bs(key), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await crypto.subtle.sign('HMAC', k, bs(data)));
}

/** The AES-256-CTR key and the MAC key of a media key. */
async function mediaKeys(key: Uint8Array): Promise<{ aes: CryptoKey; mac: Uint8Array }> {
  if (key.length !== 32) throw new Error(`a media key has 32 bytes, not ${key.length}`);
  const enc = new TextEncoder();
  const aesKey = await hmac(key, enc.encode('iris media v1 aes-256-ctr'));
  const mac = await hmac(key, enc.encode('iris media v1 hmac-sha256'));
  const aes = await crypto.subtle.importKey('raw', bs(aesKey), 'AES-CTR', false, ['encrypt', 'decrypt']);
  return { aes, mac };
}

/** `iv ‖ AES-256-CTR(plain) ‖ HMAC-SHA256(iv ‖ ciphertext)` under `key`. */
export async function encryptMedia(plain: Uint8Array, key: Uint8Array): Promise<Uint8Array> {
  const { aes, mac } = await mediaKeys(key);
  const iv = crypto.getRandomValues(new Uint8Array(16));
  const body = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-CTR', counter: iv, length: 128 }, aes, bs(plain)));
  const out = new Uint8Array(16 + body.length + 32);
  out.set(iv);
  out.set(body, 16);
  out.set(await hmac(mac, out.subarray(0, 16 + body.length)), 16 + body.length);
  return out;
}

/** Checks the MAC (then, when given, the plaintext's SHA-256) and decrypts. */
export async function decryptMedia(blob: Uint8Array, key: Uint8Array, plainSha256?: Uint8Array): Promise<Uint8Array> {
  const { aes, mac } = await mediaKeys(key);
  if (blob.length < 48) throw new Error('the blob is too short to be encrypted media');
  const signedPart = blob.subarray(0, blob.length - 32);
  const want = await hmac(mac, signedPart);
  const tag = blob.subarray(blob.length - 32);
  if (want.some((b, i) => b !== tag[i])) throw new Error("the blob's MAC does not match (altered, or not this key)");
  const iv = blob.slice(0, 16);
  const plain = new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-CTR', counter: iv, length: 128 }, aes, bs(signedPart.subarray(16))));
  if (plainSha256 && plainSha256.length > 0) {
    const got = await sha256(plain);
    if (got.some((b, i) => b !== plainSha256[i])) throw new Error("the decrypted file's SHA-256 is not the one the message carries");
  }
  return plain;
}

// ----- the HTTP media API -------------------------------------------------------------------

interface UploadState {
  upload_id: string;
  offset: number;
  size_bytes: number;
  media?: { media_id: string };
}

/** Bytes per PATCH. */
const CHUNK_BYTES = 1 << 20;

async function api<T>(method: string, path: string, token: string, body?: BodyInit, headers: Record<string, string> = {}): Promise<T> {
  const response = await fetch(path, { method, body, headers: { authorization: `Bearer ${token}`, ...headers } });
  const text = await response.text();
  if (!response.ok) {
    let message = `The media server answered ${response.status}.`;
    try {
      const e = JSON.parse(text) as { code?: string; message?: string };
      message = `${e.message ?? message} (${(e.code ?? '').replace(/^ERROR_CODE_/, '')})`;
    } catch {
      // not JSON
    }
    throw new Error(message);
  }
  return JSON.parse(text) as T;
}

/** Uploads `bytes` (resuming from the server's offset); the blob's id. */
async function upload(token: string, bytes: Uint8Array, kind: string): Promise<string> {
  const sha = hex(await sha256(bytes));
  let state = await api<UploadState>('POST', '/v1/media/uploads', token, JSON.stringify({ kind, size_bytes: bytes.length, sha256: sha, encrypted: true, mime: 'application/octet-stream', idempotency_key: sha.slice(0, 32) }), {
    'content-type': 'application/json',
  });
  for (let attempts = 0; !state.media; ) {
    const chunk = bytes.slice(state.offset, state.offset + CHUNK_BYTES);
    try {
      state = await api<UploadState>('PATCH', `/v1/media/uploads/${state.upload_id}`, token, bs(chunk), {
        'upload-offset': String(state.offset),
        'content-type': 'application/offset+octet-stream',
      });
    } catch (e) {
      if (++attempts > 5) throw e;
      state = await api<UploadState>('GET', `/v1/media/uploads/${state.upload_id}`, token);
    }
  }
  return state.media.media_id;
}

/** The kind and MIME type of a file, from its first bytes (the table of the SDK and the
 * server, `iris_proto::media::sniff`), else a document of its declared type. */
export function sniff(head: Uint8Array, declared: string): { kind: number; mime: string } {
  const at = (offset: number, magic: string) => [...magic].every((c, i) => head[offset + i] === c.charCodeAt(0));
  const image = (mime: string) => ({ kind: MEDIA_KIND.image, mime });
  const voice = (mime: string) => ({ kind: MEDIA_KIND.voice, mime });
  const video = (mime: string) => ({ kind: MEDIA_KIND.video, mime });
  if (at(0, '\x89PNG\r\n\x1a\n')) return image('image/png');
  if (at(0, '\xff\xd8\xff')) return image('image/jpeg');
  if (at(0, 'GIF87a') || at(0, 'GIF89a')) return image('image/gif');
  if (at(0, 'RIFF') && at(8, 'WEBP')) return image('image/webp');
  if (at(0, 'RIFF') && at(8, 'WAVE')) return voice('audio/wav');
  if (at(0, 'OggS')) return voice('audio/ogg');
  if (at(0, '#!AMR')) return voice('audio/amr');
  if (at(0, 'ID3') || (head.length >= 2 && head[0] === 0xff && (head[1] & 0xe0) === 0xe0)) return voice('audio/mpeg');
  if (at(4, 'ftyp')) {
    // ISO base media: the brand tells audio-only M4A from video.
    if (at(8, 'M4A ') || at(8, 'M4B ')) return voice('audio/mp4');
    return video(at(8, 'qt  ') ? 'video/quicktime' : 'video/mp4');
  }
  if (at(0, '\x1a\x45\xdf\xa3')) return video('video/webm');
  return { kind: MEDIA_KIND.document, mime: declared || 'application/octet-stream' };
}

/** What the browser's own player reads from a voice note or video before it is encrypted: how
 * long it plays (0 when the file does not say, as a recording may not), and for a video its
 * pixel size and a JPEG thumbnail of its first frame; undefined where it cannot decode it. */
export async function inspectPlayable(
  bytes: Uint8Array,
  kind: number,
  mime: string,
): Promise<{ durationMs: number; width: number; height: number; poster?: Uint8Array } | undefined> {
  if (typeof document === 'undefined') return undefined;
  const video = kind === MEDIA_KIND.video ? document.createElement('video') : undefined;
  const element = video ?? document.createElement('audio');
  const url = URL.createObjectURL(new Blob([bytes as BlobPart], { type: mime }));
  try {
    element.preload = video ? 'auto' : 'metadata';
    element.muted = true;
    const loaded = new Promise<boolean>((resolve) => {
      // A video's first frame is there at `loadeddata`; an audio file's length at `loadedmetadata`.
      if (video) video.onloadeddata = () => resolve(true);
      else element.onloadedmetadata = () => resolve(true);
      element.onerror = () => resolve(false);
      setTimeout(() => resolve(false), 5_000);
    });
    element.src = url;
    if (!(await loaded)) return undefined;
    const durationMs = Number.isFinite(element.duration) ? Math.round(element.duration * 1000) : 0;
    if (!video) return { durationMs, width: 0, height: 0 };
    const [width, height] = [video.videoWidth, video.videoHeight];
    return { durationMs, width, height, poster: width > 0 && height > 0 ? await drawThumbnail(video, width, height) : undefined };
  } finally {
    element.removeAttribute('src');
    URL.revokeObjectURL(url);
  }
}

/** `source` (`width` × `height` pixels) drawn at most [`THUMBNAIL_PX`] on its longest side, as
 * a JPEG; undefined where the browser cannot. */
async function drawThumbnail(source: CanvasImageSource, width: number, height: number): Promise<Uint8Array | undefined> {
  if (typeof OffscreenCanvas === 'undefined') return undefined;
  const scale = Math.min(1, THUMBNAIL_PX / Math.max(width, height));
  const canvas = new OffscreenCanvas(Math.max(1, Math.round(width * scale)), Math.max(1, Math.round(height * scale)));
  canvas.getContext('2d')?.drawImage(source, 0, 0, canvas.width, canvas.height);
  return new Uint8Array(await (await canvas.convertToBlob({ type: 'image/jpeg', quality: 0.7 })).arrayBuffer());
}

/** Longest side of a thumbnail, in pixels (as the CLI and the server make them). */
const THUMBNAIL_PX = 320;

/** A photo's pixel size and a JPEG thumbnail of it, drawn by the browser (so in encrypted mode
 * the server never sees the picture); undefined where the browser cannot decode it. A video's
 * comes from [`inspectPlayable`]. */
export async function makeThumbnail(bytes: Uint8Array, mime: string): Promise<{ jpeg: Uint8Array; width: number; height: number } | undefined> {
  if (typeof createImageBitmap === 'undefined') return undefined;
  try {
    const bitmap = await createImageBitmap(new Blob([bytes as BlobPart], { type: mime }));
    const { width, height } = bitmap;
    const jpeg = await drawThumbnail(bitmap, width, height);
    bitmap.close();
    return jpeg && { jpeg, width, height };
  } catch {
    return undefined;
  }
}

/** Encrypts and uploads a file, and for a photo its thumbnail (under a key of its own): the
 * `MediaRef` for the message, with its keys (the message's `media_ids` are `mediaIdsOf` its
 * media). */
export async function uploadFile(token: string, file: { name: string; type: string; bytes: Uint8Array }): Promise<MediaRef> {
  if (file.bytes.length > MEDIA_BYTES_MAX) throw new Error(`Files up to ${MEDIA_BYTES_MAX >> 20} MiB can be sent from the browser.`);
  const { kind, mime } = sniff(file.bytes.subarray(0, 16), file.type);
  const key = crypto.getRandomValues(new Uint8Array(32));
  const blob = await encryptMedia(file.bytes, key);
  const mediaId = await upload(token, blob, KIND_NAMES[kind]);
  const ref: MediaRef = {
    mediaId,
    kind,
    sizeBytes: file.bytes.length,
    sha256: bytesToBase64(await sha256(file.bytes)),
    mime,
    width: 0,
    height: 0,
    durationMs: 0,
    thumbnailId: '',
    key: bytesToBase64(key),
    thumbnailKey: '',
    fileName: file.name.replace(/^.*[\\/]/, ''),
  };
  const played = kind === MEDIA_KIND.voice || kind === MEDIA_KIND.video ? await inspectPlayable(file.bytes, kind, mime) : undefined;
  if (played) [ref.durationMs, ref.width, ref.height] = [played.durationMs, played.width, played.height];
  const thumb = kind === MEDIA_KIND.image ? await makeThumbnail(file.bytes, mime) : undefined;
  if (thumb) [ref.width, ref.height] = [thumb.width, thumb.height];
  const jpeg = thumb?.jpeg ?? played?.poster;
  if (jpeg) {
    const thumbKey = crypto.getRandomValues(new Uint8Array(32));
    ref.thumbnailId = await upload(token, await encryptMedia(jpeg, thumbKey), KIND_NAMES[MEDIA_KIND.thumbnail]);
    ref.thumbnailKey = bytesToBase64(thumbKey);
  }
  return ref;
}

/** The stored bytes of blob `mediaId`, through a signed URL. */
async function fetchBlob(token: string, mediaId: string): Promise<Uint8Array> {
  if (!/^[0-9a-f]{64}$/.test(mediaId)) throw new Error('not a media id');
  const signedUrl = await api<{ url: string }>('GET', `/v1/media/${mediaId}/url`, token);
  const response = await fetch(signedUrl.url);
  if (!response.ok) throw new Error(`The download failed (${response.status}).`);
  return new Uint8Array(await response.arrayBuffer());
}

/** The decrypted thumbnail of an encrypted photo (its MAC checked), if it names one. */
export async function downloadThumbnail(token: string, ref: MediaRef): Promise<Uint8Array | undefined> {
  if (!ref.thumbnailId || !ref.thumbnailKey) return undefined;
  return decryptMedia(await fetchBlob(token, ref.thumbnailId), base64ToBytes(ref.thumbnailKey));
}

/** Downloads a blob and, for encrypted media, checks and decrypts it. */
export async function downloadMedia(token: string, ref: MediaRef): Promise<Uint8Array> {
  const blob = await fetchBlob(token, ref.mediaId);
  if (!ref.key) {
    const want = base64ToBytes(ref.sha256);
    const got = await sha256(blob);
    if (want.length > 0 && got.some((b, i) => b !== want[i])) throw new Error('the downloaded file does not have the promised SHA-256');
    return blob;
  }
  return decryptMedia(blob, base64ToBytes(ref.key), base64ToBytes(ref.sha256));
}

/** A short description: `Photo`, `Document · name.pdf`, `Voice note · 0.5 s`, with its size. */
export function describeMedia(ref: MediaRef): string {
  const word = ref.kind === MEDIA_KIND.image || ref.kind === MEDIA_KIND.thumbnail ? 'Photo' : ref.kind === MEDIA_KIND.voice ? 'Voice note' : ref.kind === MEDIA_KIND.video ? 'Video' : 'Document';
  const size = ref.sizeBytes >= 1 << 20 ? `${(ref.sizeBytes / (1 << 20)).toFixed(1)} MiB` : `${Math.ceil(ref.sizeBytes / 1024)} KiB`;
  const length = ref.durationMs > 0 ? `${(ref.durationMs / 1000).toFixed(1)} s` : '';
  return [word, ref.kind === MEDIA_KIND.document ? ref.fileName : '', length, size].filter(Boolean).join(' · ');
}

/** The player the browser offers for a voice note or video it can decode (from a blob: URL,
 * once the person asks: a video may be large), if any. */
export function playerFor(ref: MediaRef): 'audio' | 'video' | undefined {
  if (ref.kind === MEDIA_KIND.voice && /^audio\/(wav|x-wav|ogg|mpeg|mp4|aac|webm)$/.test(ref.mime)) return 'audio';
  if (ref.kind === MEDIA_KIND.video && /^video\/(mp4|webm|ogg)$/.test(ref.mime)) return 'video';
  return undefined;
}

/** Whether the browser can show it inline (decoded by the browser, from a blob: URL). */
export function isShownInline(ref: MediaRef): boolean {
  return ref.kind === MEDIA_KIND.image && /^image\/(png|jpeg|gif|webp)$/.test(ref.mime);
}
