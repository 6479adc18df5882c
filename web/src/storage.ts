// What the browser keeps across reloads, in localStorage: the device's refresh token (never the
// access token, which lives in memory only) and, per device, the client state (chats, history,
// the inbox cursor, unsent messages). The server keeps no history after delivery, so this is
// the only copy of a conversation on this device. Writes are synchronous, so the state is stored
// before the inbox entries it holds are acked.

import { emptyState, type ClientState } from './model';

const SESSION_KEY = 'iris.session';
const stateKey = (accountId: string, deviceId: number) => `iris.state.${accountId}.${deviceId}`;

export interface StoredSession {
  accountId: string;
  deviceId: number;
  phone: string;
  refreshToken: string;
}

export function loadSession(): StoredSession | undefined {
  try {
    const raw = localStorage.getItem(SESSION_KEY);
    if (!raw) return undefined;
    const s = JSON.parse(raw) as StoredSession;
    return s.refreshToken && s.accountId && s.deviceId ? s : undefined;
  } catch {
    return undefined;
  }
}

export function saveSession(session: StoredSession): void {
  localStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

export function loadState(accountId: string, deviceId: number): ClientState {
  try {
    const raw = localStorage.getItem(stateKey(accountId, deviceId));
    if (!raw) return emptyState();
    const state = JSON.parse(raw) as ClientState;
    return state.version === 1 && state.chats ? { ...emptyState(), ...state } : emptyState();
  } catch {
    return emptyState();
  }
}

/** Stores the state; throws when the browser refuses (storage full), so nothing is acked. */
export function saveState(accountId: string, deviceId: number, state: ClientState): void {
  localStorage.setItem(stateKey(accountId, deviceId), JSON.stringify(state));
}

/** Forgets this device: its session and its chats. */
export function forgetDevice(accountId: string, deviceId: number): void {
  localStorage.removeItem(SESSION_KEY);
  localStorage.removeItem(stateKey(accountId, deviceId));
}
