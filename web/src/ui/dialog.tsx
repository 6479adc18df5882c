// A modal panel: a title, a close button, focus moved inside on open and back on close. Escape
// closes it (handled by the app, which knows which dialog is open).

import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';

export function Dialog(props: { title: string; onClose: () => void; children: ComponentChildren }) {
  const panel = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const before = document.activeElement as HTMLElement | null;
    const first = panel.current?.querySelector<HTMLElement>('input, select, textarea, button:not(.close)');
    (first ?? panel.current)?.focus();
    return () => before?.focus?.();
  }, []);
  return (
    <div class="overlay" onClick={(e) => e.target === e.currentTarget && props.onClose()}>
      <div class="dialog" role="dialog" aria-modal="true" aria-label={props.title} ref={panel} tabIndex={-1}>
        <header>
          <h2>{props.title}</h2>
          <button type="button" class="close" onClick={props.onClose} aria-label="Close">×</button>
        </header>
        {props.children}
      </div>
    </div>
  );
}

/** A form's error line (role=alert so screen readers say it). */
export function ErrorLine({ text }: { text: string }) {
  return text ? <p class="error" role="alert">{text}</p> : null;
}
