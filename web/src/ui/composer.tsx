// The message box: Enter sends, Shift+Enter starts a new line, Escape cancels a reply or an
// edit. While the person types, the chat is told (typing; "stopped" when the box empties, after
// a pause, or when the message is sent).

import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import type { Chat, ChatMessage } from '../model';
import type { Session } from '../session';
import { MEDIA_BYTES_MAX } from '../media';
import { messagePreview } from './format';

/** What the box is writing: a new message, a reply to one, or an edit of mine. */
export type ComposeMode = { kind: 'new' } | { kind: 'reply'; to: ChatMessage } | { kind: 'edit'; message: ChatMessage };

/** After this long without a keystroke, "stopped typing" is sent. */
const TYPING_PAUSE_MS = 4000;

export function Composer(props: { session: Session; chat: Chat; mode: ComposeMode; focusRequest: number; onModeDone: () => void }) {
  const { session, chat, mode } = props;
  const [text, setText] = useState('');
  const input = useRef<HTMLTextAreaElement>(null);
  const pause = useRef<ReturnType<typeof setTimeout>>(undefined);
  const picker = useRef<HTMLInputElement>(null);
  const [uploading, setUploading] = useState(false);

  /** Sends the chosen file, with the box's text as its caption. */
  const attach = async (file: File | undefined) => {
    if (!file) return;
    if (file.size > MEDIA_BYTES_MAX) {
      session.showNotice('error', `Files up to ${MEDIA_BYTES_MAX >> 20} MiB can be sent from the browser.`);
      return;
    }
    setUploading(true);
    try {
      await session.sendMedia(chat.key, { name: file.name, type: file.type, bytes: new Uint8Array(await file.arrayBuffer()) }, text.trim());
      setText('');
    } catch (e) {
      session.showNotice('error', `The file was not sent: ${(e as Error).message}`);
    } finally {
      setUploading(false);
      if (picker.current) picker.current.value = '';
    }
  };

  // In the same commit as the mode (a layout effect, not one after the next paint): a key typed
  // right after "Edit" is added to the message's text rather than overwritten by it.
  useLayoutEffect(() => {
    if (mode.kind === 'edit') setText(mode.message.text);
    input.current?.focus();
  }, [mode, props.focusRequest]);
  useEffect(() => () => {
    clearTimeout(pause.current);
    session.setTyping(chat.key, false);
  }, [chat.key]);

  const onInput = (value: string) => {
    setText(value);
    if (mode.kind === 'edit') return;
    session.setTyping(chat.key, value.trim().length > 0);
    clearTimeout(pause.current);
    pause.current = setTimeout(() => session.setTyping(chat.key, false), TYPING_PAUSE_MS);
  };

  const submit = () => {
    const body = text.trim();
    if (!body) return;
    clearTimeout(pause.current);
    if (mode.kind === 'edit') {
      if (body !== mode.message.text) {
        session.edit(chat.key, mode.message.serverMsgId!, body).catch((e) => session.showNotice('error', (e as Error).message));
      }
    } else {
      session.sendText(chat.key, body, mode.kind === 'reply' ? mode.to.serverMsgId : undefined);
    }
    setText('');
    props.onModeDone();
  };

  const cancel = () => {
    setText('');
    props.onModeDone();
  };

  return (
    <form class="composer" onSubmit={(e) => { e.preventDefault(); submit(); }}>
      {mode.kind !== 'new' && (
        <div class="compose-mode">
          <span>
            {mode.kind === 'reply' ? 'Replying to: ' : 'Editing: '}
            <q>{messagePreview(mode.kind === 'reply' ? mode.to : mode.message)}</q>
          </span>
          <button type="button" onClick={cancel} aria-label="Cancel">×</button>
        </div>
      )}
      <div class="compose-row">
        <input ref={picker} type="file" hidden aria-label="Attach a photo or file" onChange={(e) => attach(e.currentTarget.files?.[0])} />
        <button type="button" class="attach" disabled={uploading || mode.kind === 'edit'} title="Attach a photo or file" aria-label={uploading ? 'Uploading' : 'Attach'}
          onClick={() => picker.current?.click()}>{uploading ? '⏳' : '📎'}</button>
        <textarea
          ref={input}
          rows={1}
          value={text}
          placeholder="Type a message"
          aria-label="Message"
          onInput={(e) => onInput(e.currentTarget.value)}
          onBlur={() => session.setTyping(chat.key, false)}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
              e.preventDefault();
              submit();
            } else if (e.key === 'Escape' && mode.kind !== 'new') {
              e.preventDefault();
              e.stopPropagation();
              cancel();
            }
          }}
        />
        <button type="submit" class="send" aria-label={mode.kind === 'edit' ? 'Save edit' : 'Send'}>{mode.kind === 'edit' ? '✓' : '➤'}</button>
      </div>
    </form>
  );
}
