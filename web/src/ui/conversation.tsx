// One open chat: the header (title, presence or who is typing, the encryption notice), the
// messages, and the composer (reply and edit modes). Incoming messages count as read only when
// they are on screen in a visible page: an IntersectionObserver tells the session, which sends
// READ once per message.

import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import * as model from '../model';
import type { Chat } from '../model';
import type { Session } from '../session';
import { Composer, type ComposeMode } from './composer';
import { chatTitle, presenceText } from './format';
import { MessageBubble } from './message_bubble';

/** The conversation's safety number (the SDK's), shown on request to compare out of band. */
function SafetyNumber(props: { session: Session; peer: string }) {
  const [number, setNumber] = useState<string>();
  if (number) return <span class="safety-number" data-testid="safety-number">Safety number: <code>{number}</code></span>;
  return (
    <button type="button" class="link" onClick={() => props.session.safetyNumber(props.peer).then(setNumber, (e) => props.session.showNotice('error', (e as Error).message))}>
      Show safety number
    </button>
  );
}

export function Conversation(props: {
  session: Session;
  chat: Chat;
  focusRequest: number;
  onBack: () => void;
  onGroupInfo: () => void;
  onForward: (message: model.Forwardable) => void;
}) {
  const { session, chat } = props;
  const [mode, setMode] = useState<ComposeMode>({ kind: 'new' });
  const list = useRef<HTMLOListElement>(null);
  const stickToBottom = useRef(true);
  const messages = model.orderedMessages(chat);
  const me = session.me.accountId;

  // Keep the newest message in view unless the person scrolled up.
  useLayoutEffect(() => {
    const el = list.current;
    if (el && stickToBottom.current) el.scrollTop = el.scrollHeight;
  }, [messages.length, messages[messages.length - 1]?.id]);

  useReadReceipts(session, chat, list);

  const typingPhones = session
    .typingIn(chat.key)
    .map((id) => (chat.kind === 'group' ? chat.group?.members.find((m) => m.accountId === id)?.phone ?? 'Someone' : ''));
  let subtitle: string;
  if (typingPhones.length > 0) {
    subtitle = chat.kind === 'group' ? `${typingPhones.join(', ')} typing…` : 'typing…';
  } else if (chat.kind === 'group') {
    const n = chat.group?.members.length ?? 0;
    subtitle = chat.group?.left ? 'You are no longer a member' : n > 0 ? `${n} members` : '';
  } else {
    subtitle = presenceText(session.presence.get(chat.peerAccountId ?? ''));
  }

  const role = model.myRole(chat, me);
  const announcementOnly = chat.kind === 'group' && chat.group?.settings.adminsOnlySend && !model.isAdminRole(role);
  return (
    <section class="conversation" aria-label={`Chat with ${chatTitle(chat)}`}>
      <header class="conversation-header">
        <button type="button" class="back" onClick={props.onBack} aria-label="Back to chats">←</button>
        <div class="conversation-title">
          <h2>{chatTitle(chat)}</h2>
          <span class={`subtitle ${typingPhones.length > 0 ? 'typing' : ''}`} data-testid="chat-subtitle">{subtitle}</span>
        </div>
        {chat.kind === 'group' && (
          <button type="button" onClick={props.onGroupInfo} aria-label="Group info" title="Members, invite link, settings">Info</button>
        )}
      </header>
      {session.endToEnd ? (
        <p class="e2e-on" role="note" data-testid="e2e-state">
          🔒 End-to-end encrypted.{' '}
          {chat.kind === 'direct' && <SafetyNumber session={session} peer={chat.peerAccountId!} />}
        </p>
      ) : (
        <p class="e2e-off" role="note" data-testid="e2e-state">🔓 Not end-to-end encrypted: the server can read these messages.</p>
      )}
      <ol class="messages" ref={list} aria-label="Messages" tabIndex={0}
        onScroll={(e) => {
          const el = e.currentTarget;
          stickToBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
        }}>
        {messages.map((m) => (
          <MessageBubble
            key={m.id}
            session={session}
            chat={chat}
            message={m}
            replyTarget={m.replyTo ? model.findMessage(chat, m.replyTo) : undefined}
            onReply={() => setMode({ kind: 'reply', to: m })}
            onEdit={() => setMode({ kind: 'edit', message: m })}
            onForward={() => props.onForward(m)}
          />
        ))}
      </ol>
      {chat.kind === 'group' && chat.group?.left ? (
        <p class="composer-closed">You can't send messages to this group because you're no longer a member.</p>
      ) : announcementOnly ? (
        <p class="composer-closed">Only admins can send messages to this group.</p>
      ) : (
        <Composer session={session} chat={chat} mode={mode} focusRequest={props.focusRequest} onModeDone={() => setMode({ kind: 'new' })} />
      )}
    </section>
  );
}

/** Reports incoming messages as seen once they are on screen while the page is visible. */
function useReadReceipts(session: Session, chat: Chat, list: { current: HTMLOListElement | null }) {
  const unseen = chat.messages.filter((m) => !m.fromMe && !m.seen && !m.notice && m.serverMsgId).map((m) => m.serverMsgId!);
  const key = unseen.join(',');
  useEffect(() => {
    const root = list.current;
    if (!root || unseen.length === 0) return;
    const visible = new Set<string>();
    const report = () => {
      if (document.visibilityState !== 'visible' || visible.size === 0) return;
      session.markSeen(chat.key, [...visible]);
    };
    const observer = new IntersectionObserver(
      (entries) => {
        for (const entry of entries) {
          const id = (entry.target as HTMLElement).dataset.serverId;
          if (!id) continue;
          if (entry.isIntersecting) visible.add(id);
          else visible.delete(id);
        }
        report();
      },
      { root, threshold: 0.5 },
    );
    root.querySelectorAll<HTMLElement>('[data-unseen="true"]').forEach((el) => observer.observe(el));
    document.addEventListener('visibilitychange', report);
    return () => {
      observer.disconnect();
      document.removeEventListener('visibilitychange', report);
    };
  }, [chat.key, key]);
}
