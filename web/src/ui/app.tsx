// The top of the page: the login screen, or the messenger of the logged-in device (the chat
// list beside the open conversation on a wide window, one of them at a time on a phone), with
// the connection banner, notices and the dialogs. The open chat is kept in the URL's hash, so a
// reload comes back to it; `#join=<token>` joins a group by its invite link.

import { useEffect, useState } from 'preact/hooks';
import { E2eCrypto } from '../e2e';
import type { Ask } from '../e2e';
import type { Credentials } from '../http_api';
import type { ChatKey, Forwardable } from '../model';
import { Session } from '../session';
import * as storage from '../storage';
import { Banner, Notices } from './banner';
import { ChatList } from './chat_list';
import { Conversation } from './conversation';
import { ForwardDialog } from './forward_dialog';
import { GroupPanel } from './group_panel';
import { Login } from './login';
import { NewChatDialog, NewGroupDialog } from './new_chat';
import { SettingsPanel } from './settings_panel';
import { useSession } from './use_session';

/** Every device encrypts end to end (the SDK's Olm and Megolm formats). */
const makeCrypto = (me: { accountId: string; deviceId: number }, ask: Ask) => new E2eCrypto(me, ask);

function resumeSession(onSignedOut: (reason: string) => void): Session | undefined {
  const stored = storage.loadSession();
  return stored ? new Session(stored, makeCrypto, onSignedOut) : undefined;
}

export function App() {
  const [notice, setNotice] = useState<string>();
  const signedOut = (reason: string) => {
    setNotice(reason);
    setSession(undefined);
  };
  const [session, setSession] = useState<Session | undefined>(() => resumeSession(signedOut));

  useEffect(() => {
    if (!session) return;
    session.start();
    return () => session.stop();
  }, [session]);

  if (!session) {
    return (
      <Login
        notice={notice}
        onLoggedIn={(c: Credentials) => {
          const stored = { accountId: String(c.account_id), deviceId: c.device_id, phone: c.phone, refreshToken: c.refresh_token };
          storage.saveSession(stored);
          setNotice(undefined);
          setSession(new Session({ ...stored, access: c }, makeCrypto, signedOut));
        }}
      />
    );
  }
  return <Messenger session={session} />;
}

type Dialog =
  | { kind: 'none' }
  | { kind: 'new-chat' }
  | { kind: 'new-group' }
  | { kind: 'settings' }
  | { kind: 'group-info' }
  | { kind: 'forward'; message: Forwardable };

function chatFromHash(): ChatKey | undefined {
  const m = /^#chat=([ug]:[0-9]+)$/.exec(location.hash);
  return m?.[1];
}

function Messenger({ session }: { session: Session }) {
  useSession(session);
  const [open, setOpen] = useState<ChatKey | undefined>(() => {
    const key = chatFromHash();
    return key && session.state.chats[key] ? key : undefined;
  });
  const [dialog, setDialog] = useState<Dialog>({ kind: 'none' });
  const close = () => setDialog({ kind: 'none' });

  // Bumped whenever a chat is opened, even the one already open: its composer takes the focus.
  const [focusRequest, setFocusRequest] = useState(0);
  const openChat = (key: ChatKey | undefined) => {
    setOpen(key);
    setFocusRequest((n) => n + 1);
    history.replaceState(null, '', key ? `#chat=${key}` : location.pathname);
  };

  // An invite link opened in this browser: join once connected.
  const online = session.link.kind === 'online';
  useEffect(() => {
    const m = /^#join=([A-Za-z0-9_-]+)$/.exec(location.hash);
    if (!m || !online) return;
    history.replaceState(null, '', location.pathname);
    session.joinGroup(m[1]).then((key) => key && openChat(key), (e) => session.showNotice('error', (e as Error).message));
  }, [online]);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape' && dialog.kind !== 'none') {
        close();
        e.preventDefault();
      }
    };
    addEventListener('keydown', onKey);
    return () => removeEventListener('keydown', onKey);
  }, [dialog.kind]);

  const chat = open ? session.state.chats[open] : undefined;
  return (
    <div class={`messenger ${chat ? 'has-open-chat' : ''}`}>
      <Banner session={session} />
      {/* Behind an open dialog the panes are inert: nothing there takes a click, a key or the focus. */}
      <div class="panes" inert={dialog.kind !== 'none'}>
        <ChatList
          session={session}
          openKey={open}
          onOpen={openChat}
          onNewChat={() => setDialog({ kind: 'new-chat' })}
          onNewGroup={() => setDialog({ kind: 'new-group' })}
          onSettings={() => setDialog({ kind: 'settings' })}
        />
        {chat ? (
          <Conversation
            key={chat.key}
            session={session}
            chat={chat}
            focusRequest={focusRequest}
            onBack={() => openChat(undefined)}
            onGroupInfo={() => setDialog({ kind: 'group-info' })}
            onForward={(message) => setDialog({ kind: 'forward', message })}
          />
        ) : (
          <section class="conversation empty" aria-label="No chat open">
            <p>Choose a chat, or start a new one.</p>
            {session.endToEnd ? (
              <p class="e2e-on">🔒 Messages are end-to-end encrypted: only the people in a chat can read them.</p>
            ) : (
              <p class="e2e-off">🔓 Messages are not end-to-end encrypted: the server can read them.</p>
            )}
          </section>
        )}
      </div>
      {dialog.kind === 'new-chat' && <NewChatDialog session={session} onClose={close} onOpen={(k) => { close(); openChat(k); }} />}
      {dialog.kind === 'new-group' && <NewGroupDialog session={session} onClose={close} onOpen={(k) => { close(); openChat(k); }} />}
      {dialog.kind === 'settings' && <SettingsPanel session={session} onClose={close} />}
      {dialog.kind === 'group-info' && chat?.kind === 'group' && <GroupPanel session={session} chat={chat} onClose={close} />}
      {dialog.kind === 'forward' && <ForwardDialog session={session} message={dialog.message} onClose={close} />}
      <Notices session={session} />
    </div>
  );
}
