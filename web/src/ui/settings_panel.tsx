// Settings of this device: who sees my presence, the account's devices (the primary device can
// log out the others, and approves or refuses the devices waiting to be linked), and logging out.

import { useEffect, useState } from 'preact/hooks';
import type { DeviceInfo, PendingLinkInfo } from '../http_api';
import type { PresencePrivacy } from '../proto';
import type { Session } from '../session';
import { Dialog, ErrorLine } from './dialog';
import { failureText } from './login';
import { messageTime } from './format';

export function SettingsPanel(props: { session: Session; onClose: () => void }) {
  const { session } = props;
  const [devices, setDevices] = useState<DeviceInfo[]>();
  const [error, setError] = useState('');
  const load = () => session.devices().then(setDevices, (e) => setError(failureText(e)));
  useEffect(() => void load(), []);
  const mine = devices?.find((d) => d.device_id === session.me.deviceId);
  const [links, setLinks] = useState<PendingLinkInfo[]>();
  const loadLinks = () => session.pendingLinks().then(setLinks);
  // The primary sees the links waiting for its approval: loaded on open, then every 2 s while open.
  useEffect(() => {
    if (!mine?.primary) return;
    loadLinks().catch((e) => setError(failureText(e)));
    const timer = setInterval(() => loadLinks().catch(() => {}), 2000);
    return () => clearInterval(timer);
  }, [mine?.primary]);

  const run = async (what: () => Promise<unknown>) => {
    setError('');
    try {
      await what();
    } catch (err) {
      setError(failureText(err));
    }
  };

  return (
    <Dialog title="Settings" onClose={props.onClose}>
      <p>
        {session.me.phone}, device {session.me.deviceId}
        {mine?.primary ? ' (primary)' : ''}
      </p>
      <label for="privacy">Who can see when I'm online and last seen</label>
      <select id="privacy" onChange={(e) => run(() => session.setPrivacy(e.currentTarget.value as PresencePrivacy))}>
        <option value="">Choose…</option>
        <option value="PRESENCE_PRIVACY_EVERYONE">Everyone</option>
        <option value="PRESENCE_PRIVACY_CONTACTS">My contacts</option>
        <option value="PRESENCE_PRIVACY_NOBODY">Nobody</option>
      </select>

      <h3>Devices</h3>
      <p class="hint">To link another device, log in with this number there, then approve its link code on the primary device.</p>
      <ul class="devices">
        {(devices ?? []).map((d) => (
          <li key={d.device_id}>
            <span>
              {d.name || `Device ${d.device_id}`}
              {d.primary ? ' · primary' : ''}
              {d.device_id === session.me.deviceId ? ' · this browser' : ''}
            </span>
            <span class="hint">linked {messageTime(d.created_at_ms)}</span>
            {mine?.primary && d.device_id !== session.me.deviceId && (
              <button type="button" class="danger" onClick={() => run(async () => { await session.revokeDevice(d.device_id); await load(); })}>
                Log out
              </button>
            )}
          </li>
        ))}
      </ul>

      {mine?.primary && (
        <section aria-labelledby="links-title">
          <h3 id="links-title">Devices waiting for approval</h3>
          {links?.length ? (
            <ul class="devices" aria-labelledby="links-title">
              {links.map((l) => (
                <li key={l.link_code}>
                  <span>
                    <strong class="link-code-small">{l.link_code}</strong> {l.device_name}
                  </span>
                  <span class="hint">until {messageTime(l.expires_at_ms)}</span>
                  <button type="button" aria-label={`Approve ${l.link_code}`}
                    onClick={() => run(async () => { await session.approveLink(l.link_code); await Promise.all([load(), loadLinks()]); })}>
                    Approve
                  </button>
                  <button type="button" class="danger" aria-label={`Refuse ${l.link_code}`}
                    onClick={() => run(async () => { await session.refuseLink(l.link_code); await loadLinks(); })}>
                    Refuse
                  </button>
                </li>
              ))}
            </ul>
          ) : (
            <p class="hint">{links ? 'None. A new device shows a link code after logging in with this number.' : 'Loading…'}</p>
          )}
          <button type="button" onClick={() => run(loadLinks)}>Refresh</button>
        </section>
      )}

      <button type="button" class="danger" onClick={() => run(() => session.logout())}>Log out of this browser</button>
      {mine?.primary && <p class="hint">This is the account's primary device: logging out forgets it in this browser; its messages wait on the server.</p>}
      <ErrorLine text={error} />
    </Dialog>
  );
}
