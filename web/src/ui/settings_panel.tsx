// Settings of this device: who sees my presence, the account's devices (the primary device can
// log out the others), and logging out.

import { useEffect, useState } from 'preact/hooks';
import type { DeviceInfo } from '../http_api';
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
      <p class="hint">To link another device, log in with this number there.</p>
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

      <button type="button" class="danger" onClick={() => run(() => session.logout())}>Log out of this browser</button>
      {mine?.primary && <p class="hint">This is the account's primary device: logging out forgets it in this browser; its messages wait on the server.</p>}
      <ErrorLine text={error} />
    </Dialog>
  );
}
