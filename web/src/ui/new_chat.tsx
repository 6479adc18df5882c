// Starting conversations: a new chat by phone number (contact discovery says whether it is on
// Iris), joining a group by its invite link, and creating a group.

import { useState } from 'preact/hooks';
import type { ChatKey } from '../model';
import type { Session } from '../session';
import { Dialog, ErrorLine } from './dialog';
import { isPhone, normalisePhone } from './format';

export function NewChatDialog(props: { session: Session; onClose: () => void; onOpen: (key: ChatKey) => void }) {
  const [phone, setPhone] = useState('');
  const [link, setLink] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  const start = async (e: Event) => {
    e.preventDefault();
    const number = normalisePhone(phone);
    if (!isPhone(number)) return setError('Enter the number in international format, e.g. +14155550123.');
    setBusy(true);
    try {
      props.onOpen(await props.session.startChat(number));
    } catch (err) {
      setError((err as Error).message);
      setBusy(false);
    }
  };

  const join = async (e: Event) => {
    e.preventDefault();
    const token = /join=([A-Za-z0-9_-]+)/.exec(link)?.[1] ?? link.trim();
    if (!/^[A-Za-z0-9_-]+$/.test(token)) return setError('Paste an invite link (…#join=…) or its code.');
    setBusy(true);
    try {
      const key = await props.session.joinGroup(token);
      if (key) props.onOpen(key);
      else props.onClose();
    } catch (err) {
      setError((err as Error).message);
      setBusy(false);
    }
  };

  return (
    <Dialog title="New chat" onClose={props.onClose}>
      <form onSubmit={start}>
        <label for="new-chat-phone">Phone number</label>
        <input id="new-chat-phone" type="tel" placeholder="+14155550123" value={phone} onInput={(e) => setPhone(e.currentTarget.value)} />
        <button type="submit" disabled={busy}>Start chat</button>
      </form>
      <form onSubmit={join}>
        <label for="join-link">Or join a group with an invite link</label>
        <input id="join-link" value={link} onInput={(e) => setLink(e.currentTarget.value)} placeholder="https://…/#join=…" />
        <button type="submit" disabled={busy}>Join group</button>
      </form>
      <ErrorLine text={error} />
    </Dialog>
  );
}

export function NewGroupDialog(props: { session: Session; onClose: () => void; onOpen: (key: ChatKey) => void }) {
  const [name, setName] = useState('');
  const [members, setMembers] = useState('');
  const [announcement, setAnnouncement] = useState(false);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  const create = async (e: Event) => {
    e.preventDefault();
    const phones = members.split(/[,\n]/).map(normalisePhone).filter(Boolean);
    const bad = phones.find((p) => !isPhone(p));
    if (!name.trim()) return setError('Give the group a name.');
    if (bad) return setError(`${bad} is not a phone number in international format.`);
    setBusy(true);
    try {
      props.onOpen(await props.session.createGroup(name.trim(), phones, { adminsOnlySend: announcement }));
    } catch (err) {
      setError((err as Error).message);
      setBusy(false);
    }
  };

  return (
    <Dialog title="New group" onClose={props.onClose}>
      <form onSubmit={create}>
        <label for="group-name">Group name</label>
        <input id="group-name" value={name} maxLength={100} onInput={(e) => setName(e.currentTarget.value)} />
        <label for="group-members">Members' phone numbers (comma-separated)</label>
        <textarea id="group-members" rows={3} value={members} onInput={(e) => setMembers(e.currentTarget.value)} />
        <label class="check">
          <input type="checkbox" checked={announcement} onChange={(e) => setAnnouncement(e.currentTarget.checked)} />
          Only admins can send messages (announcements)
        </label>
        <button type="submit" disabled={busy}>Create group</button>
      </form>
      <ErrorLine text={error} />
    </Dialog>
  );
}
