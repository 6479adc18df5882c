// The login screen: phone number, then the one-time code. The first login of a number creates
// the account; a later one links this browser as another device of it (at most 5).

import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiFailure, browserDeviceName, httpApi, type Credentials } from '../http_api';
import { isPhone, normalisePhone } from './format';

export function Login(props: { notice?: string; onLoggedIn: (c: Credentials) => void }) {
  const [phone, setPhone] = useState('');
  const [code, setCode] = useState('');
  const [step, setStep] = useState<'phone' | 'code'>('phone');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const [dev, setDev] = useState(false);
  const codeInput = useRef<HTMLInputElement>(null);

  useEffect(() => {
    httpApi.info().then((i) => setDev(i.dev), () => {});
  }, []);
  useEffect(() => {
    if (step === 'code') codeInput.current?.focus();
  }, [step]);

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
      props.onLoggedIn(await httpApi.verify(phone, code.trim(), browserDeviceName()));
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
      <p class="hint">If this number already uses Iris, this browser becomes one of its linked devices (up to 5).</p>
      <p class="hint e2e-off">🔓 Messages are not end-to-end encrypted yet: the server can read them.</p>
    </main>
  );
}

export function failureText(err: unknown): string {
  if (err instanceof ApiFailure) {
    const code = err.code.replace(/^ERROR_CODE_/, '');
    const wait = err.retryAfterMs ? ` Try again in ${Math.ceil(err.retryAfterMs / 1000)} s.` : '';
    return err.isNetwork ? err.message : `${err.message} (${code})${wait}`;
  }
  return (err as Error)?.message ?? String(err);
}
