// The chat list: every conversation and group, most recent first, with its last message (my
// own with its tick), who is typing, the time and the unread count. Arrow keys move between
// chats; Enter opens one.

import * as model from '../model';
import type { ChatKey } from '../model';
import type { Session } from '../session';
import { chatTitle, listTime, messagePreview, TICK_GLYPH } from './format';

export function ChatList(props: {
  session: Session;
  openKey?: ChatKey;
  onOpen: (key: ChatKey) => void;
  onNewChat: () => void;
  onNewGroup: () => void;
  onSettings: () => void;
}) {
  const { session } = props;
  const chats = model.orderedChats(session.state);
  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
    const items = [...(e.currentTarget as HTMLElement).querySelectorAll<HTMLButtonElement>('.chat-item')];
    const idx = items.indexOf(document.activeElement as HTMLButtonElement);
    const next = items[Math.min(items.length - 1, Math.max(0, idx + (e.key === 'ArrowDown' ? 1 : -1)))];
    next?.focus();
    e.preventDefault();
  };
  return (
    <nav class="chat-list" aria-label="Chats">
      <header class="list-header">
        <div class="me">
          <strong>Chats</strong>
          <span class="my-phone">{session.me.phone}</span>
        </div>
        <div class="list-actions">
          <button type="button" onClick={props.onNewChat} aria-label="New chat" title="New chat">✎</button>
          <button type="button" onClick={props.onNewGroup} aria-label="New group" title="New group">👥</button>
          <button type="button" onClick={props.onSettings} aria-label="Settings" title="Settings, devices, log out">⚙</button>
        </div>
      </header>
      {chats.length === 0 ? (
        <p class="list-empty">No chats yet. Start one with ✎.</p>
      ) : (
        <ul onKeyDown={onKeyDown}>
          {chats.map((chat) => {
            const last = model.lastMessage(chat);
            const unread = model.unreadCount(chat);
            const typing = session.typingIn(chat.key).length > 0;
            return (
              <li key={chat.key}>
                <button
                  type="button"
                  class={`chat-item ${chat.key === props.openKey ? 'open' : ''}`}
                  data-chat={chat.key}
                  aria-current={chat.key === props.openKey ? 'true' : undefined}
                  onClick={() => props.onOpen(chat.key)}
                >
                  <span class="avatar" aria-hidden="true">{chat.kind === 'group' ? '👥' : '👤'}</span>
                  <span class="chat-main">
                    <span class="chat-title">{chatTitle(chat)}</span>
                    <span class="chat-preview">
                      {typing ? (
                        <em class="typing">typing…</em>
                      ) : last ? (
                        <>
                          {last.fromMe && !last.notice && last.tick && <span class={`tick tick-${last.tick}`}>{TICK_GLYPH[last.tick]} </span>}
                          {chat.kind === 'group' && !last.fromMe && !last.notice && last.fromPhone ? `${last.fromPhone}: ` : ''}
                          {messagePreview(last)}
                        </>
                      ) : (
                        ''
                      )}
                    </span>
                  </span>
                  <span class="chat-side">
                    <span class="chat-time">{listTime(last?.tsMs ?? 0)}</span>
                    {unread > 0 && <span class="unread" aria-label={`${unread} unread`}>{unread}</span>}
                  </span>
                </button>
              </li>
            );
          })}
        </ul>
      )}
    </nav>
  );
}
