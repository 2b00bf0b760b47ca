"""Domain errors. Core code raises these; api/errors.py is the one place that turns them into gRPC statuses."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: `field` is its path (e.g. `job.server_config.batch_size`)."""

    field: str
    description: str


class FloristError(Exception):
    """Base of every error a caller may see; the message is safe to show to that caller."""


class InvalidArgument(FloristError):
    def __init__(self, violations: list[FieldViolation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations) or "invalid argument")


class NotFound(FloristError):
    pass


class FailedPrecondition(FloristError):
    """The request is fine but the state of things is not; `violations` name what to fix (e.g. a data file)."""

    def __init__(self, message: str, violations: list[FieldViolation] | None = None) -> None:
        self.violations = violations or []
        super().__init__(message)


class AlreadyExists(FloristError):
    pass


class Unavailable(FloristError):
    pass


class DeadlineExceeded(FloristError):
    pass


class Unauthenticated(FloristError):
    pass


class PermissionDenied(FloristError):
    pass
