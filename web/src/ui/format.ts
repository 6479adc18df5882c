// How times, people and ticks are written on screen. Pure text, no DOM.

import type { Chat, ChatMessage, Tick } from '../model';
import type { Presence } from '../session';

/** `14:05` today, `Mon 14:05` this week, else `3 Dec 14:05`. */
export function messageTime(ms: number, now = Date.now()): string {
  const d = new Date(ms);
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const days = (now - ms) / 86_400_000;
  if (new Date(now).toDateString() === d.toDateString()) return time;
  if (days < 6) return `${d.toLocaleDateString([], { weekday: 'short' })} ${time}`;
  return `${d.toLocaleDateString([], { day: 'numeric', month: 'short' })} ${time}`;
}

/** The chat list's time column: the time today, else the date. */
export function listTime(ms: number, now = Date.now()): string {
  if (!ms) return '';
  const d = new Date(ms);
  if (new Date(now).toDateString() === d.toDateString()) return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return d.toLocaleDateString([], { day: 'numeric', month: 'short' });
}

export function chatTitle(chat: Chat): string {
  return chat.kind === 'group' ? chat.group?.name ?? 'Group' : chat.phone ?? `Account ${chat.peerAccountId}`;
}

export function presenceText(p: Presence | undefined, now = Date.now()): string {
  if (!p) return '';
  if (p.online) return 'online';
  if (!p.lastSeenMs) return ''; // hidden by their privacy setting, or never seen
  return `last seen ${messageTime(p.lastSeenMs, now)}`;
}

export const TICK_GLYPH: Record<Tick, string> = { pending: '🕓', sent: '✓', delivered: '✓✓', read: '✓✓', failed: '!' };
export const TICK_LABEL: Record<Tick, string> = {
  pending: 'Sending',
  sent: 'Sent',
  delivered: 'Delivered',
  read: 'Read',
  failed: 'Not sent',
};

/** One line of a message for previews and reply quotes. */
export function messagePreview(m: ChatMessage): string {
  if (m.deleted) return 'This message was deleted';
  if (m.unreadable) return m.unreadableReason ? '🔒 This message could not be decrypted' : 'A message this browser cannot show';
  const media = m.media?.media[0];
  if (media && !m.text) return media.kind === 1 ? '📷 Photo' : `📎 ${media.fileName || 'File'}`;
  return m.text.replace(/\s+/g, ' ').slice(0, 120);
}

/** E.164: a plus, then 7 to 15 digits. */
export function isPhone(s: string): boolean {
  return /^\+[1-9][0-9]{6,14}$/.test(s);
}

/** "+1 415…" → "+1415…": what people paste, as the server wants it. */
export function normalisePhone(s: string): string {
  return s.replace(/[\s().-]/g, '');
}
