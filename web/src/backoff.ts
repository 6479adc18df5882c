// Reconnect delays: exponential backoff with full jitter (as the Rust SDK does), so a server
// restart is not met by every browser at the same instant. Pure: the random source is passed in.

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
}

export const defaultBackoff: BackoffPolicy = { initialMs: 500, maxMs: 15_000 };

/** The delay before reconnect attempt `attempt` (0 for the first retry). */
export function backoffDelayMs(policy: BackoffPolicy, attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(attempt, 20));
  // Full jitter, but never below a quarter of the initial delay (no reconnect storm at 0 ms).
  return Math.max(policy.initialMs / 4, Math.floor(random() * ceiling));
}
