// Byte and text encodings the client's parts share: base64 both ways, UTF-8 text in base64, and
// JSON whose integers keep every digit. Imports no code, so any part may use it.

import type { Base64 } from './proto';

/** Bytes → standard base64. */
export function bytesToBase64(bytes: Uint8Array): Base64 {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

/** Standard (or URL-safe, unpadded) base64 → bytes; throws on bad input. */
export function base64ToBytes(b64: Base64): Uint8Array {
  let normal = b64.replace(/-/g, '+').replace(/_/g, '/');
  while (normal.length % 4 !== 0) normal += '=';
  const binary = atob(normal);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

/** UTF-8 text → standard base64. */
export function textToBase64(text: string): Base64 {
  return bytesToBase64(new TextEncoder().encode(text));
}

/** Standard (or URL-safe, unpadded) base64 → UTF-8 text; undefined when it is not. */
export function base64ToText(payload: Base64): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(base64ToBytes(payload));
  } catch {
    return undefined;
  }
}

/** Parses JSON keeping every integer's digits: integers are read as decimal strings (ids pass
 * 2^53, and `JSON.parse` would round them). Numbers with a fraction or exponent stay numbers. */
export function parseExact(text: string): unknown {
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      out += c;
      if (c === '\\') out += text[++i] ?? '';
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
      out += c;
    } else if ((c >= '0' && c <= '9') || c === '-') {
      let j = i + 1;
      while (j < text.length && text[j] >= '0' && text[j] <= '9') j++;
      const integer = !/[.eE]/.test(text[j] ?? '');
      if (!integer) while (j < text.length && /[0-9.eE+-]/.test(text[j])) j++;
      out += integer ? `"${text.slice(i, j)}"` : text.slice(i, j);
      i = j - 1;
    } else {
      out += c;
    }
  }
  return JSON.parse(out);
}
