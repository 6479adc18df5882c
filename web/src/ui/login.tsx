// The login screen: phone number, then the one-time code. The first login of a number creates
// the account; a later one asks to link this browser as another device of it (at most 5): the
// server answers with a link code that the account's primary device must approve, meanwhile this
// screen shows the code and collects the credentials every second.

import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiFailure, browserDeviceName, httpApi, type Credentials, type LinkPending } from '../http_api';
import { isPhone, normalisePhone } from './format';
import { LinkQr } from './link_qr';

export function Login(props: { notice?: string; onLoggedIn: (c: Credentials) => void }) {
  const [phone, setPhone] = useState('');
  const [code, setCode] = useState('');
  const [step, setStep] = useState<'phone' | 'code' | 'link'>('phone');
  const [pending, setPending] = useState<LinkPending>();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const [dev, setDev] = useState(false);
  const codeInput = useRef<HTMLInputElement>(null);
  const startOverButton = useRef<HTMLButtonElement>(null);

  useEffect(() => {
    httpApi.info().then((i) => setDev(i.dev), () => {});
  }, []);
  useEffect(() => {
    if (step === 'code') codeInput.current?.focus();
    if (step === 'link') startOverButton.current?.focus();
  }, [step]);

  // While a link waits for the primary's approval: collect every second until the credentials come,
  // or the link is refused or expires (then the error says so and "Start over" goes back).
  useEffect(() => {
    if (!pending) return;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expiresAt = Date.now() + pending.expires_in_s * 1000;
    const poll = async () => {
      try {
        const r = await httpApi.collectLink(pending);
        if (stopped) return;
        if ('credentials' in r) {
          stopped = true;
          props.onLoggedIn(r.credentials);
          return;
        }
      } catch (err) {
        if (stopped) return;
        if (!(err instanceof ApiFailure && err.isNetwork)) {
          setError(linkFailureText(err));
          setPending(undefined);
          return;
        }
      }
      if (Date.now() > expiresAt + 5_000) {
        setError('The link code expired before it was approved. Start over to get a new one.');
        setPending(undefined);
        return;
      }
      timer = setTimeout(poll, 1000);
    };
    timer = setTimeout(poll, 1000);
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [pending]);

  const startOver = () => {
    setPending(undefined);
    setStep('phone');
    setCode('');
    setError('');
    setBusy(false);
  };

  const requestCode = async (e: Event) => {
    e.preventDefault();
    const number = normalisePhone(phone);
    if (!isPhone(number)) {
      setError('Enter the number in international format, e.g. +14155550123.');
      return;
    }
    setBusy(true);
    setError('');
    try {
      await httpApi.requestCode(number);
      setPhone(number);
      setStep('code');
    } catch (err) {
      setError(failureText(err));
    } finally {
      setBusy(false);
    }
  };

  const verify = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      const r = await httpApi.verify(phone, code.trim(), browserDeviceName());
      if ('credentials' in r) {
        props.onLoggedIn(r.credentials);
      } else {
        setPending(r.pending);
        setStep('link');
        setBusy(false);
      }
    } catch (err) {
      setError(failureText(err));
      setBusy(false);
    }
  };

  return (
    <main class="login">
      <h1>Iris</h1>
      {props.notice && <p class="login-notice" role="status">{props.notice}</p>}
      {step === 'phone' ? (
        <form onSubmit={requestCode}>
          <label for="phone">Your phone number</label>
          <input id="phone" name="phone" type="tel" autoComplete="tel" placeholder="+14155550123" value={phone}
            onInput={(e) => setPhone(e.currentTarget.value)} autoFocus required />
          <button type="submit" disabled={busy}>Send code</button>
        </form>
      ) : step === 'link' ? (
        <section class="link-pending" aria-label="Approve this browser">
          {pending ? (
            <>
              <p>
                Approve this browser on your phone: <code>iris devices approve {pending.link_code}</code>, or in
                Settings on your other device.
              </p>
              <p class="link-code-line">
                Link code <strong class="link-code">{pending.link_code}</strong>
              </p>
              <LinkQr code={pending.link_code} />
              <p class="hint" role="status">Waiting for approval…</p>
            </>
          ) : null}
          <button type="button" class="link" ref={startOverButton} onClick={startOver}>Start over</button>
        </section>
      ) : (
        <form onSubmit={verify}>
          <label for="code">The code sent to {phone}</label>
          <input id="code" name="code" ref={codeInput} inputMode="numeric" autoComplete="one-time-code" value={code}
            onInput={(e) => setCode(e.currentTarget.value)} required />
          {dev && <p class="hint">This is a development server: the code is 000000.</p>}
          <button type="submit" disabled={busy}>Log in</button>
          <button type="button" class="link" onClick={() => { setStep('phone'); setCode(''); setError(''); }}>Use another number</button>
        </form>
      )}
      {error && <p class="error" role="alert">{error}</p>}
      <p class="hint">If this number already uses Iris, this browser becomes one of its linked devices (up to 5) once the account's primary device approves it.</p>
      <p class="hint e2e-on">🔒 Messages are end-to-end encrypted: the server cannot read them.</p>
    </main>
  );
}

/** Why collecting a link failed, said plainly. */
function linkFailureText(err: unknown): string {
  const code = err instanceof ApiFailure ? err.code.replace(/^ERROR_CODE_/, '') : '';
  if (code === 'LINK_REFUSED') return 'Your other device refused to link this browser. Start over to try again.';
  if (code === 'LINK_EXPIRED') return 'The link code expired before it was approved. Start over to get a new one.';
  return failureText(err);
}

export function failureText(err: unknown): string {
  if (err instanceof ApiFailure) {
    const code = err.code.replace(/^ERROR_CODE_/, '');
    const wait = err.retryAfterMs ? ` Try again in ${Math.ceil(err.retryAfterMs / 1000)} s.` : '';
    return err.isNetwork ? err.message : `${err.message} (${code})${wait}`;
  }
  return (err as Error)?.message ?? String(err);
}
