// Bounded retries with exponential backoff and jitter, for the calls that are safe to repeat: CreateJob (its
// request_id makes a retry return the same job) and StreamMetrics (resumed with after_sequence).
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";

export interface RetryPolicy {
  /** Retries after the first try; the call fails with the last error once they are used up. */
  readonly maxRetries: number;
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { maxRetries: 8, initialDelayMs: 250, maxDelayMs: 8_000 };

/**
 * Whether a failed call may be tried again: UNAVAILABLE (server down or restarting, connection refused, a PING
 * timeout), and what connect-node reports when the connection drops under a call: ABORTED (connection reset) or
 * CANCELLED (HTTP/2 stream closed with CANCEL, e.g. the server process died). This client never cancels a call
 * itself, so a CANCELLED can only come from the connection or the server.
 */
export function isTransient(error: unknown): error is ConnectError {
  return (
    error instanceof ConnectError &&
    (error.code === Code.Unavailable || error.code === Code.Aborted || error.code === Code.Canceled)
  );
}

export class Backoff {
  private retries = 0;

  constructor(private readonly policy: RetryPolicy = DEFAULT_RETRY_POLICY) {}

  /** Call after progress (e.g. an event arrived): the next failure starts from the first delay again. */
  reset(): void {
    this.retries = 0;
  }

  /** How long to wait before the next try, or undefined when no retry is left. */
  nextDelayMs(): number | undefined {
    if (this.retries >= this.policy.maxRetries) {
      return undefined;
    }
    const ceiling = Math.min(this.policy.maxDelayMs, this.policy.initialDelayMs * 2 ** this.retries);
    this.retries += 1;
    // Half fixed, half random: clients cut off together do not all come back at the same instant.
    return ceiling / 2 + (Math.random() * ceiling) / 2;
  }
}

/**
 * Runs `attempt` until it succeeds, trying again after transient failures while `backoff` allows; `onRetry` is
 * told why before each wait. Any other error, or the last transient one, is thrown.
 */
export async function withRetries<T>(
  backoff: Backoff,
  attempt: () => Promise<T>,
  onRetry: (error: ConnectError) => void,
): Promise<T> {
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      const delayMs = isTransient(error) ? backoff.nextDelayMs() : undefined;
      if (!isTransient(error) || delayMs === undefined) {
        throw error;
      }
      onRetry(error);
      await sleep(delayMs);
    }
  }
}
