// Forwarding a message (text, or a photo or file with its caption) to up to five chats at once.

import { useState } from 'preact/hooks';
import * as model from '../model';
import type { ChatKey } from '../model';
import type { Session } from '../session';
import { Dialog, ErrorLine } from './dialog';
import { chatTitle } from './format';

const FORWARD_CHATS_MAX = 5;

export function ForwardDialog(props: { session: Session; message: model.Forwardable; onClose: () => void }) {
  const [picked, setPicked] = useState<ChatKey[]>([]);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const chats = model.orderedChats(props.session.state).filter((c) => !c.group?.left);
  const toggle = (key: ChatKey, on: boolean) =>
    setPicked(on ? [...picked, key].slice(0, FORWARD_CHATS_MAX) : picked.filter((k) => k !== key));

  const send = async (e: Event) => {
    e.preventDefault();
    if (picked.length === 0) return setError('Choose at least one chat.');
    setBusy(true);
    try {
      await props.session.forward(props.message, picked);
      props.onClose();
    } catch (err) {
      setError((err as Error).message);
      setBusy(false);
    }
  };

  return (
    <Dialog title="Forward to…" onClose={props.onClose}>
      <form onSubmit={send}>
        <p class="hint">Up to {FORWARD_CHATS_MAX} chats.</p>
        <ul class="pick-list">
          {chats.map((c) => (
            <li key={c.key}>
              <label class="check">
                <input type="checkbox" checked={picked.includes(c.key)}
                  disabled={!picked.includes(c.key) && picked.length >= FORWARD_CHATS_MAX}
                  onChange={(e) => toggle(c.key, e.currentTarget.checked)} />
                {chatTitle(c)}
              </label>
            </li>
          ))}
        </ul>
        <button type="submit" disabled={busy}>Forward</button>
      </form>
      <ErrorLine text={error} />
    </Dialog>
  );
}
