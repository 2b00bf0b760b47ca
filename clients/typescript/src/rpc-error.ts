// How an RPC error is shown to a user: the gRPC code's canonical name, the server's message, and the
// google.rpc details the control plane attaches (BadRequest field violations, ErrorInfo).
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";

// connect-es names codes in camel case (Code.InvalidArgument); users, docs and grpcurl say INVALID_ARGUMENT.
const GRPC_CODE_NAMES: Record<Code, string> = {
  [Code.Canceled]: "CANCELLED",
  [Code.Unknown]: "UNKNOWN",
  [Code.InvalidArgument]: "INVALID_ARGUMENT",
  [Code.DeadlineExceeded]: "DEADLINE_EXCEEDED",
  [Code.NotFound]: "NOT_FOUND",
  [Code.AlreadyExists]: "ALREADY_EXISTS",
  [Code.PermissionDenied]: "PERMISSION_DENIED",
  [Code.ResourceExhausted]: "RESOURCE_EXHAUSTED",
  [Code.FailedPrecondition]: "FAILED_PRECONDITION",
  [Code.Aborted]: "ABORTED",
  [Code.OutOfRange]: "OUT_OF_RANGE",
  [Code.Unimplemented]: "UNIMPLEMENTED",
  [Code.Internal]: "INTERNAL",
  [Code.Unavailable]: "UNAVAILABLE",
  [Code.DataLoss]: "DATA_LOSS",
  [Code.Unauthenticated]: "UNAUTHENTICATED",
};

export function grpcCodeName(code: Code): string {
  return GRPC_CODE_NAMES[code];
}

/** `CODE: message`, then `  field: description` per BadRequest field violation and `  reason: ...` per ErrorInfo. */
export function describeRpcError(error: ConnectError): string[] {
  const lines = [`${grpcCodeName(error.code)}: ${error.rawMessage}`];
  for (const badRequest of error.findDetails(BadRequestSchema)) {
    for (const violation of badRequest.fieldViolations) {
      lines.push(`  ${violation.field}: ${violation.description}`);
    }
  }
  for (const info of error.findDetails(ErrorInfoSchema)) {
    lines.push(`  reason: ${info.reason}${info.domain ? ` (${info.domain})` : ""}`);
  }
  return lines;
}
