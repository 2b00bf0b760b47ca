"""Domain errors. Core code raises these; api/errors.py is the one place that turns them into gRPC statuses.

Every error carries a `reason` (google.rpc.ErrorInfo, AIP-193): a stable UPPER_SNAKE_CASE name clients branch
on, a class default that a raise may make more specific (`NotFound(..., reason="JOB_NOT_FOUND")`), and
optional `metadata` (e.g. the job id). Messages never echo caller input unbounded: quote it with `quote`.
"""

from __future__ import annotations

from dataclasses import dataclass

# Longest piece of caller input an error message repeats: an 18,000-character job id must still give a short
# error (clients accept only a few KiB of status metadata).
QUOTE_CHARS = 100


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """`value` as an error message shows it: repr-quoted and cut to about `limit` characters."""
    text = str(value)
    if len(text) > limit:
        return repr(text[:limit]) + f"... ({len(text)} characters)"
    return repr(text)


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: `field` is its path (e.g. `job.server_config.batch_size`)."""

    field: str
    description: str


class FloristError(Exception):
    """Base of every error a caller may see; the message is safe to show to that caller."""

    reason = "ERROR"

    def __init__(self, message: str = "", *, reason: str | None = None, metadata: dict[str, str] | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(FloristError):
    reason = "INVALID_ARGUMENT"

    def __init__(
        self, violations: list[FieldViolation], *, reason: str | None = None, metadata: dict[str, str] | None = None
    ) -> None:
        self.violations = violations
        message = "; ".join(f"{v.field}: {v.description}" for v in violations) or "invalid argument"
        super().__init__(message, reason=reason, metadata=metadata)


class NotFound(FloristError):
    reason = "NOT_FOUND"


class FailedPrecondition(FloristError):
    """The request is fine but the state of things is not; `violations` name what to fix (e.g. a data file)."""

    reason = "FAILED_PRECONDITION"

    def __init__(
        self,
        message: str = "",
        violations: list[FieldViolation] | None = None,
        *,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.violations = violations or []
        super().__init__(message, reason=reason, metadata=metadata)


class OutOfRange(FloristError):
    """A position past the end of something that will not grow any more (e.g. the events of an ended job)."""

    reason = "OUT_OF_RANGE"


class DataLoss(FloristError):
    """Stored data is not what was written (a saved model whose bytes no longer match their record)."""

    reason = "DATA_LOSS"


class AlreadyExists(FloristError):
    reason = "ALREADY_EXISTS"


class Unavailable(FloristError):
    reason = "UNAVAILABLE"


class ResourceExhausted(FloristError):
    """A bound on what one caller (or all callers) may hold at once was reached; retry later."""

    reason = "RESOURCE_EXHAUSTED"


class DeadlineExceeded(FloristError):
    reason = "DEADLINE_EXCEEDED"


class Unauthenticated(FloristError):
    reason = "UNAUTHENTICATED"


class PermissionDenied(FloristError):
    reason = "PERMISSION_DENIED"


def job_not_found(job_id: str) -> NotFound:
    """The one way to say a job does not exist (reason JOB_NOT_FOUND, the id quoted short)."""
    return NotFound(f"job {quote(job_id)} not found", reason="JOB_NOT_FOUND", metadata={"job_id": job_id})


class Aborted(FloristError):
    """The operation lost a race with a concurrent one (a StopTraining during StartTraining; an agent session
    replaced by a newer one)."""

    reason = "ABORTED"
