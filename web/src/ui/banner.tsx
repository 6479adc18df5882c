// The connection banner (shown whenever the device is not connected: connecting, offline with
// the next retry, or taken over by another tab) and the stack of short notices.

import { useEffect, useState } from 'preact/hooks';
import type { Session } from '../session';

export function Banner({ session }: { session: Session }) {
  const link = session.link;
  const [, tick] = useState(0);
  useEffect(() => {
    if (link.kind !== 'offline') return;
    const t = setInterval(() => tick((n) => n + 1), 1000);
    return () => clearInterval(t);
  }, [link]);
  if (link.kind === 'online') return null;
  if (link.kind === 'connecting') {
    return <div class="banner" role="status" data-link="connecting">Connecting…</div>;
  }
  if (link.kind === 'replaced') {
    return (
      <div class="banner" role="alert" data-link="replaced">
        Iris is open in another window or tab.{' '}
        <button type="button" onClick={() => session.reconnectNow()}>Use here</button>
      </div>
    );
  }
  const seconds = Math.max(0, Math.ceil((link.retryAtMs - Date.now()) / 1000));
  return (
    <div class="banner offline" role="alert" data-link="offline">
      Not connected: {link.reason} {seconds > 0 ? `Retrying in ${seconds} s.` : 'Retrying…'}{' '}
      <button type="button" onClick={() => session.reconnectNow()}>Retry now</button>
    </div>
  );
}

export function Notices({ session }: { session: Session }) {
  if (session.notices.length === 0) return null;
  return (
    <div class="notices" aria-live="polite">
      {session.notices.map((n) => (
        <div key={n.id} class={`notice ${n.kind}`} role={n.kind === 'error' ? 'alert' : 'status'}>
          <span>{n.text}</span>
          <button type="button" aria-label="Dismiss" onClick={() => session.dismissNotice(n.id)}>×</button>
        </div>
      ))}
    </div>
  );
}
