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
    pass


class AlreadyExists(FloristError):
    pass


class Unavailable(FloristError):
    pass


class DeadlineExceeded(FloristError):
    pass


class Aborted(FloristError):
    """The operation lost a race with another one on the same job (e.g. a StopTraining during StartTraining)."""


class Unauthenticated(FloristError):
    pass


class PermissionDenied(FloristError):
    pass
