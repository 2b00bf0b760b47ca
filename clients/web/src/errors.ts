// How the page tells the errors of its calls apart: the caller went away (nothing to show), the token is missing
// or refused (ask for one), or a status to show with its details, as the CLI shows them.
import { Code, ConnectError } from "@connectrpc/connect";
import { describeRpcError } from "../../typescript/src/rpc-error.js";

/** A call the page itself ended (it left the page, or chose another log). */
export function isAborted(error: unknown): boolean {
  return (
    (error instanceof ConnectError && error.code === Code.Canceled) ||
    (error instanceof DOMException && error.name === "AbortError")
  );
}

export function needsToken(error: unknown): boolean {
  return error instanceof ConnectError && error.code === Code.Unauthenticated;
}

/** `CODE: message`, then each field violation and the reason, as `florist-grpc` prints them. */
export function describe(error: unknown): string[] {
  if (error instanceof ConnectError) {
    return describeRpcError(error);
  }
  return [error instanceof Error ? error.message : String(error)];
}
