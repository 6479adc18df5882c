// One WebSocket connection speaking `iris.v1.json` (PROTOCOL.md): the handshake, requests
// matched to their answers by request id, unsolicited events handed on, heartbeat pings, and a
// watchdog that closes a connection whose server stopped answering. It never reconnects: that
// is `session.ts`'s job. Frames that cannot be parsed are reported and skipped, never thrown.

import type { ClientOp, ServerEvent, ServerFrame, U64, Welcome, WireError } from './proto';

export const SUBPROTOCOL = 'iris.v1.json';

/** A request the server refused (or that could not be sent): the wire error, as it came. */
export class RequestFailed extends Error {
  constructor(readonly wire: WireError) {
    super(wire.message || wire.code || 'request failed');
  }
  get code(): string {
    return this.wire.code ?? 'ERROR_CODE_UNSPECIFIED';
  }
}

/** Why a connection ended. */
export type CloseReason =
  | { kind: 'lost' } // socket closed or never opened: reconnect with backoff
  | { kind: 'fatal'; error: WireError } // the server's fatal error
  | { kind: 'go-away'; reconnectAfterMs: number }
  | { kind: 'closed-by-client' };

export interface ConnectionHandlers {
  /** Unsolicited events (deliveries, presence, typing) and answers nobody waits for. */
  onEvent(event: ServerEvent): void;
  /** A frame or event that does not follow the protocol (logged, shown, skipped). */
  onMalformed(detail: string): void;
  /** Called once, when the connection is over. */
  onClose(reason: CloseReason): void;
}

const NOT_CONNECTED: WireError = { code: 'CLIENT_NOT_CONNECTED', message: 'Not connected to the server.' };
/** How long a ping may go unanswered before the connection is taken for dead. */
const PONG_TIMEOUT_MS = 10_000;

export class Connection {
  private socket: WebSocket;
  private nextRequestId = 1;
  private waiting = new Map<string, { resolve: (e: ServerEvent) => void; reject: (e: RequestFailed) => void }>();
  private closed = false;
  private heartbeat?: ReturnType<typeof setInterval>;
  private watchdog?: ReturnType<typeof setTimeout>;
  private welcomeResolve?: (w: Welcome) => void;
  readonly welcome: Promise<Welcome>;

  constructor(
    url: string,
    hello: { token: string; deviceId: number; resumeAfterSeq: U64 },
    private handlers: ConnectionHandlers,
  ) {
    this.welcome = new Promise((resolve) => (this.welcomeResolve = resolve));
    this.socket = new WebSocket(url, SUBPROTOCOL);
    this.socket.onopen = () => {
      const op: ClientOp = {
        requestId: this.takeRequestId(),
        hello: {
          versions: [{ major: 1, minor: 0 }],
          token: hello.token,
          deviceId: hello.deviceId,
          resumeAfterSeq: hello.resumeAfterSeq,
        },
      };
      this.waitFor(op.requestId!).then(
        (event) => this.onWelcome(event),
        () => {}, // a refused Hello is fatal: the server closes, `onClose` reports it
      );
      this.write([op]);
    };
    this.socket.onmessage = (m) => this.onMessage(m.data);
    this.socket.onclose = () => this.finish({ kind: 'lost' });
    this.socket.onerror = () => {}; // always followed by onclose
  }

  /** Sends an operation and waits for the event answering it. */
  request(op: ClientOp): Promise<ServerEvent> {
    if (this.closed || this.socket.readyState !== WebSocket.OPEN) {
      return Promise.reject(new RequestFailed(NOT_CONNECTED));
    }
    const id = this.takeRequestId();
    const answer = this.waitFor(id);
    this.write([{ ...op, requestId: id }]);
    return answer;
  }

  /** Sends operations nobody waits an answer for (acks). */
  send(ops: ClientOp[]): boolean {
    if (this.closed || this.socket.readyState !== WebSocket.OPEN) return false;
    this.write(ops.map((op) => ({ ...op, requestId: op.requestId ?? this.takeRequestId() })));
    return true;
  }

  close(): void {
    this.finish({ kind: 'closed-by-client' });
  }

  private takeRequestId(): U64 {
    return String(this.nextRequestId++);
  }

  private waitFor(id: U64): Promise<ServerEvent> {
    return new Promise((resolve, reject) => this.waiting.set(id, { resolve, reject }));
  }

  private write(ops: ClientOp[]): void {
    try {
      this.socket.send(JSON.stringify({ ops }));
    } catch {
      this.finish({ kind: 'lost' });
    }
  }

  private onWelcome(event: ServerEvent): void {
    const welcome = event.welcome;
    if (!welcome) {
      this.handlers.onMalformed('the answer to Hello was not a Welcome');
      this.finish({ kind: 'lost' });
      return;
    }
    const interval = Math.max(1000, Number(welcome.heartbeatIntervalMs) || 30_000);
    this.heartbeat = setInterval(() => this.ping(), interval / 2);
    this.welcomeResolve?.(welcome);
  }

  private ping(): void {
    this.send([{ ping: { clientTimeMs: String(Date.now()) } }]);
    if (!this.watchdog) {
      this.watchdog = setTimeout(() => {
        this.handlers.onMalformed('the server stopped answering');
        this.finish({ kind: 'lost' });
      }, PONG_TIMEOUT_MS);
    }
  }

  private onMessage(data: unknown): void {
    if (this.closed) return;
    clearTimeout(this.watchdog);
    this.watchdog = undefined;
    let frame: ServerFrame;
    try {
      if (typeof data !== 'string') throw new Error('a binary message on the JSON subprotocol');
      frame = JSON.parse(data) as ServerFrame;
      if (typeof frame !== 'object' || frame === null || Array.isArray(frame)) throw new Error('not a JSON object');
      if (frame.events !== undefined && !Array.isArray(frame.events)) throw new Error('`events` is not a list');
    } catch (e) {
      this.handlers.onMalformed(`unreadable frame: ${(e as Error).message}`);
      return;
    }
    const events = Array.isArray(frame.events) ? frame.events : [];
    for (const event of events) {
      if (typeof event !== 'object' || event === null) {
        this.handlers.onMalformed('an event that is not an object');
        continue;
      }
      try {
        this.dispatch(event);
      } catch (e) {
        this.handlers.onMalformed(`an event this client could not handle: ${(e as Error).message}`);
      }
    }
  }

  private dispatch(event: ServerEvent): void {
    if (event.goAway) {
      this.finish({ kind: 'go-away', reconnectAfterMs: Number(event.goAway.reconnectAfterMs) || 1000 });
      return;
    }
    if (event.error?.fatal) {
      this.finish({ kind: 'fatal', error: event.error });
      return;
    }
    const id = event.requestId;
    const waiter = id && id !== '0' ? this.waiting.get(id) : undefined;
    if (waiter) {
      this.waiting.delete(id!);
      if (event.error) waiter.reject(new RequestFailed(event.error));
      else waiter.resolve(event);
      return;
    }
    if (event.pong) return;
    this.handlers.onEvent(event);
  }

  private finish(reason: CloseReason): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    clearTimeout(this.watchdog);
    const failure =
      reason.kind === 'fatal' ? new RequestFailed(reason.error) : new RequestFailed(NOT_CONNECTED);
    for (const waiter of this.waiting.values()) waiter.reject(failure);
    this.waiting.clear();
    try {
      this.socket.close();
    } catch {
      // already closed
    }
    this.handlers.onClose(reason);
  }
}
