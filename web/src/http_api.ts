// The HTTP JSON API (docs/openapi.json): login by phone and one-time code, token refresh,
// devices, server info. Same origin as the page. Every failure is an `ApiFailure` carrying the
// server's error code and message (or a network failure), so the UI can show it as it is.

export interface Credentials {
  account_id: number;
  device_id: number;
  phone: string;
  access_token: string;
  access_expires_at_ms: number;
  refresh_token: string;
}

export interface ServerInfo {
  node_id: string;
  ws_path: string;
  versions: string[];
  dev: boolean;
}

export interface DeviceInfo {
  device_id: number;
  name: string;
  primary: boolean;
  created_at_ms: number;
}

/** Answer (202) to a verify that links this browser as a companion of an existing account: it waits
 * until the account's primary device approves `link_code`; `collectLink` then gets the credentials. */
export interface LinkPending {
  account_id: number;
  link_code: string;
  link_secret: string;
  expires_in_s: number;
}

/** A link waiting for the primary's approval (`GET /v1/devices/links`). */
export interface PendingLinkInfo {
  link_code: string;
  device_name: string;
  expires_at_ms: number;
}

/** Either credentials (200) or a link waiting for approval (202). */
export type VerifyResult = { credentials: Credentials } | { pending: LinkPending };

/** A refused or failed request: `code` is an `ERROR_CODE_…` name, or `NETWORK` when no answer came. */
export class ApiFailure extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }

  /** True when the server could not be reached (down, restarting, offline). */
  get isNetwork(): boolean {
    return this.code === 'NETWORK';
  }
}

async function call<T>(method: string, path: string, body?: unknown, token?: string): Promise<T> {
  return (await callWithStatus<T>(method, path, body, token)).body;
}

async function callWithStatus<T>(
  method: string,
  path: string,
  body?: unknown,
  token?: string,
): Promise<{ status: number; body: T }> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  let response: Response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiFailure('NETWORK', 'The server cannot be reached.', 0);
  }
  if (response.status === 204) return { status: 204, body: undefined as T };
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!response.ok) {
    const e = (parsed ?? {}) as { code?: string; message?: string; retry_after_ms?: number };
    throw new ApiFailure(
      e.code ?? `HTTP_${response.status}`,
      e.message ?? `The server answered ${response.status}.`,
      response.status,
      e.retry_after_ms,
    );
  }
  return { status: response.status, body: parsed as T };
}

/** 200 with credentials, or 202 with a `LinkPending` (the primary must approve first). */
async function credentialsOrPending(path: string, body: unknown): Promise<VerifyResult> {
  const r = await callWithStatus<Credentials | LinkPending>('POST', path, body);
  return r.status === 202 ? { pending: r.body as LinkPending } : { credentials: r.body as Credentials };
}

export const httpApi = {
  info: () => call<ServerInfo>('GET', '/v1/info'),
  requestCode: (phone: string) => call<{ expires_in_s: number }>('POST', '/v1/auth/request-code', { phone }),
  verify: (phone: string, code: string, deviceName: string) =>
    credentialsOrPending('/v1/auth/verify', { phone, code, device_name: deviceName }),
  /** Collects the credentials of an approved link; `pending` while the primary has not answered.
   * Fails with LINK_REFUSED (403) or LINK_EXPIRED (410). */
  collectLink: (p: LinkPending) =>
    credentialsOrPending('/v1/auth/link', { account_id: p.account_id, link_code: p.link_code, link_secret: p.link_secret }),
  listLinks: (token: string) => call<PendingLinkInfo[]>('GET', '/v1/devices/links', undefined, token),
  approveLink: (token: string, code: string) =>
    call<DeviceInfo>('POST', `/v1/devices/links/${encodeURIComponent(code)}/approve`, undefined, token),
  refuseLink: (token: string, code: string) =>
    call<void>('POST', `/v1/devices/links/${encodeURIComponent(code)}/refuse`, undefined, token),
  refresh: (refreshToken: string) => call<Credentials>('POST', '/v1/auth/refresh', { refresh_token: refreshToken }),
  devices: (token: string) => call<DeviceInfo[]>('GET', '/v1/devices', undefined, token),
  revokeDevice: (token: string, deviceId: number) =>
    call<void>('DELETE', `/v1/devices/${deviceId}`, undefined, token),
};

/** A short human label for this browser, sent as the device name at login. */
export function browserDeviceName(): string {
  const ua = navigator.userAgent;
  const browser = /Firefox\//.test(ua) ? 'Firefox' : /Edg\//.test(ua) ? 'Edge' : /Chrom/.test(ua) ? 'Chrome' : /Safari\//.test(ua) ? 'Safari' : 'Browser';
  return `Web (${browser})`;
}
