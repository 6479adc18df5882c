// One message: its text (or "deleted", or "cannot show"), the reply it quotes, "forwarded",
// "edited", the server time, my tick (✓ accepted, ✓✓ delivered, blue ✓✓ read), the reactions,
// and a menu of actions (reply, react, forward, edit within 15 minutes, delete for everyone
// within 48 hours). Group notices are a centred line instead.

import { useEffect, useState } from 'preact/hooks';
import { describeMedia, isShownInline, playerFor, type MediaRef } from '../media';
import * as model from '../model';
import type { Chat, ChatMessage } from '../model';
import type { Session } from '../session';
import { messagePreview, messageTime, TICK_GLYPH, TICK_LABEL } from './format';

const REACTIONS = ['👍', '❤️', '😂', '😮', '😢', '🙏'];

/** A photo shown inline (downloaded, checked and decrypted here, then a blob: URL; its sender's
 * thumbnail, blurred, until then), a voice note or video played once asked for, or a file
 * offered as a download. */
function MediaView(props: { session: Session; media: MediaRef }) {
  const { session, media } = props;
  const inline = isShownInline(media);
  const player = playerFor(media);
  const [url, setUrl] = useState<string>();
  const [preview, setPreview] = useState<string>();
  const [failed, setFailed] = useState<string>();
  const [loading, setLoading] = useState(false);
  const fetchUrl = () =>
    session.mediaBytes(media).then(
      (bytes) => URL.createObjectURL(new Blob([bytes as BlobPart], { type: media.mime || 'application/octet-stream' })),
      (e) => {
        setFailed((e as Error).message);
        throw e;
      },
    );
  useEffect(() => {
    if (!inline) return;
    let made: string | undefined;
    let live = true;
    fetchUrl().then((u) => (live ? setUrl((made = u)) : URL.revokeObjectURL(u)), () => {});
    return () => {
      live = false;
      if (made) URL.revokeObjectURL(made);
    };
  }, [media.mediaId]);
  useEffect(() => {
    if (!(inline || player === 'video') || !media.thumbnailId) return;
    let made: string | undefined;
    let live = true;
    // A thumbnail that fails is simply not shown: the photo itself says what went wrong.
    session.thumbnailBytes(media).then((bytes) => {
      if (!bytes) return;
      const u = URL.createObjectURL(new Blob([bytes as BlobPart], { type: 'image/jpeg' }));
      if (live) setPreview((made = u));
      else URL.revokeObjectURL(u);
    }, () => {});
    return () => {
      live = false;
      if (made) URL.revokeObjectURL(made);
    };
  }, [media.mediaId]);
  // A player's URL lives as long as the bubble.
  useEffect(() => () => void (player && url && URL.revokeObjectURL(url)), [url]);
  if (failed) return <span class="media-failed" role="alert">{describeMedia(media)}: {failed}</span>;
  if (player && url) {
    return player === 'audio'
      ? <audio class="media-audio" controls src={url} aria-label={describeMedia(media)} />
      : <video class="media-video" controls src={url} poster={preview} aria-label={describeMedia(media)} />;
  }
  if (player) {
    const play = () => {
      setLoading(true);
      fetchUrl().then(setUrl, () => setLoading(false));
    };
    return (
      <button type="button" class="media-file" onClick={play} disabled={loading} aria-label={`Play ${describeMedia(media)}`}>
        {preview && <img class="media-poster" src={preview} alt="" />}
        {loading ? '…' : '▶'} {describeMedia(media)}
      </button>
    );
  }
  if (inline) {
    if (url) return <img class="media-image" src={url} alt={describeMedia(media)} />;
    if (preview) return <img class="media-thumbnail" src={preview} alt={`${describeMedia(media)} (loading)`} />;
    return <span class="media-loading">{describeMedia(media)} …</span>;
  }
  const download = () =>
    fetchUrl().then((u) => {
      const a = document.createElement('a');
      a.href = u;
      a.download = media.fileName || 'file';
      a.click();
      setTimeout(() => URL.revokeObjectURL(u), 60_000);
    }, () => {});
  return (
    <button type="button" class="media-file" onClick={download} aria-label={`Download ${media.fileName || 'file'}`}>
      📎 {describeMedia(media)}
    </button>
  );
}

export function MessageBubble(props: {
  session: Session;
  chat: Chat;
  message: ChatMessage;
  replyTarget?: ChatMessage;
  onReply: () => void;
  onEdit: () => void;
  onForward: () => void;
}) {
  const { session, chat, message: m } = props;
  const [menu, setMenu] = useState(false);
  if (m.notice) {
    return <li class="notice-line" data-server-id={m.serverMsgId}>{m.text}</li>;
  }
  const me = session.me.accountId;
  const now = Date.now();
  const accepted = !!m.serverMsgId && !m.deleted;
  const canEdit = accepted && m.fromMe && !m.unreadable && now - m.tsMs < model.EDIT_WINDOW_MS;
  const isAdmin = chat.kind === 'group' && model.isAdminRole(model.myRole(chat, me));
  const canDelete = accepted && (m.fromMe || isAdmin) && now - m.tsMs < model.DELETE_WINDOW_MS;
  const reactions = Object.entries(m.reactions ?? {});
  const run = (what: Promise<void>) => {
    setMenu(false);
    what.catch((e) => session.showNotice('error', (e as Error).message));
  };
  const sender = chat.kind === 'group' && !m.fromMe ? m.fromPhone : '';
  return (
    <li
      class={`bubble ${m.fromMe ? 'mine' : 'theirs'} ${m.deleted ? 'deleted' : ''}`}
      data-server-id={m.serverMsgId}
      data-client-id={m.clientMsgId}
      data-unseen={!m.fromMe && !m.seen ? 'true' : undefined}
      data-tick={m.fromMe ? m.tick : undefined}
      onKeyDown={(e) => e.key === 'Escape' && menu && (setMenu(false), e.stopPropagation())}
    >
      {sender && <span class="sender">{sender}</span>}
      {m.forwarded && !m.deleted && <span class="forwarded">↪ Forwarded</span>}
      {m.replyTo && !m.deleted && (
        <blockquote class="quote">{props.replyTarget ? messagePreview(props.replyTarget) : 'An earlier message'}</blockquote>
      )}
      {!m.deleted && m.media?.media.map((ref) => <MediaView key={ref.mediaId} session={session} media={ref} />)}
      {(m.text || !m.media || m.deleted) && (
        <span class={`text ${m.unreadable ? 'unreadable' : ''}`} title={m.unreadableReason}>{m.deleted || m.unreadable ? messagePreview(m) : m.text}</span>
      )}
      <span class="meta">
        {m.encrypted && !m.deleted && <span class="lock" role="img" aria-label="End-to-end encrypted" title="End-to-end encrypted">🔒</span>}
        {m.edited && !m.deleted && <span class="edited">edited</span>}
        <time dateTime={new Date(m.tsMs).toISOString()}>{messageTime(m.tsMs)}</time>
        {m.fromMe && m.tick && (
          <span class={`tick tick-${m.tick}`} role="img" aria-label={TICK_LABEL[m.tick]} title={TICK_LABEL[m.tick]}>
            {TICK_GLYPH[m.tick]}
          </span>
        )}
      </span>
      {m.tick === 'failed' && (
        <span class="failure" role="alert">
          {m.failure}{' '}
          <button type="button" onClick={() => session.retrySend(chat.key, m.clientMsgId!)}>Retry</button>
        </span>
      )}
      {reactions.length > 0 && (
        <span class="reactions" aria-label="Reactions">
          {reactions.map(([who, emoji]) => (
            <span key={who} class={`reaction ${who === me ? 'own' : ''}`}>{emoji}</span>
          ))}
        </span>
      )}
      {accepted && (
        <button type="button" class="menu-button" aria-label="Message actions" aria-expanded={menu} onClick={() => setMenu(!menu)}>⋯</button>
      )}
      {menu && (
        <div class="menu" role="menu">
          <div class="reaction-row">
            {REACTIONS.map((emoji) => (
              <button key={emoji} type="button" role="menuitem" aria-label={`React ${emoji}`}
                onClick={() => run(session.react(chat.key, m.serverMsgId!, emoji))}>{emoji}</button>
            ))}
            {m.reactions?.[me] && (
              <button type="button" role="menuitem" onClick={() => run(session.react(chat.key, m.serverMsgId!, ''))}>Remove reaction</button>
            )}
          </div>
          <button type="button" role="menuitem" onClick={() => { setMenu(false); props.onReply(); }}>Reply</button>
          {!m.unreadable && <button type="button" role="menuitem" onClick={() => { setMenu(false); props.onForward(); }}>Forward</button>}
          {canEdit && <button type="button" role="menuitem" onClick={() => { setMenu(false); props.onEdit(); }}>Edit</button>}
          {canDelete && (
            <button type="button" role="menuitem" class="danger"
              onClick={() => confirm('Delete this message for everyone?') && run(session.deleteForEveryone(chat.key, m.serverMsgId!))}>
              Delete for everyone
            </button>
          )}
        </div>
      )}
    </li>
  );
}
