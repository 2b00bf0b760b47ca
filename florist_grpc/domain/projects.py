"""Projects and callers: who a call comes from, which projects it may see, and what its role lets it do.

A job belongs to one project. A token (a line of the auth file) names the projects it belongs to, or `*` for
every one; a caller sees and acts on the jobs of its projects only. Roles nest: viewer (read, stream) < operator
(create, start, stop, delete jobs) < admin (also a job's priority). Agent tokens name the projects whose jobs
may run clients on their site. Pure rules, no I/O: the auth file is read in api/auth.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from florist_grpc.domain.errors import FieldViolation, InvalidArgument, PermissionDenied, quote

PROJECT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
EVERY = "*"
# The project of a job created without one by a caller of every project (and of jobs stored before projects).
DEFAULT_PROJECT = "default"
# Nested: each role may do what the ones before it may.
ROLES = ("viewer", "operator", "admin")
AGENT_ROLE = "agent"


def project_name_problem(name: str) -> str | None:
    """Why `name` is not a project name, or None."""
    if PROJECT_NAME.fullmatch(name):
        return None
    return "a project name is a lowercase letter, then up to 62 lowercase letters, digits or '-'"


@dataclass(frozen=True)
class Projects:
    """A set of projects, or every project (`*`)."""

    names: frozenset[str] = frozenset()
    every: bool = False

    @classmethod
    def parse(cls, text: str) -> Projects:
        """`*` or a comma-separated list of project names; ValueError naming a bad one."""
        if text.strip() == EVERY:
            return EVERY_PROJECT
        names = [n.strip() for n in text.split(",")]
        for name in names:
            if problem := project_name_problem(name):
                raise ValueError(f"project {name!r}: {problem}")
        return cls(frozenset(names))

    @classmethod
    def of(cls, names: Iterable[str]) -> Projects:
        return cls(frozenset(names))

    def includes(self, project: str) -> bool:
        return self.every or project in self.names

    def overlaps(self, other: Projects) -> bool:
        return self.every or other.every or bool(self.names & other.names)

    def __str__(self) -> str:
        return EVERY if self.every else ",".join(sorted(self.names))


EVERY_PROJECT = Projects(every=True)


@dataclass(frozen=True)
class Caller:
    """Who a call comes from: its name (a job's owner), role and projects."""

    name: str
    role: str
    projects: Projects = EVERY_PROJECT

    def sees(self, project: str) -> bool:
        return self.projects.includes(project)

    def may(self, role: str) -> bool:
        """Whether this caller's role is `role` or one above it."""
        return self.role in ROLES and ROLES.index(self.role) >= ROLES.index(role)

    @property
    def visible(self) -> frozenset[str] | None:
        """The projects whose jobs this caller sees; None for every project."""
        return None if self.projects.every else self.projects.names

    def project_for(self, requested: str) -> str:
        """The project a job this caller creates belongs to: `requested`, or when empty the caller's only project
        (`default` for a caller of every project). InvalidArgument / PermissionDenied naming the caller's projects."""
        if requested:
            if problem := project_name_problem(requested):
                raise InvalidArgument([FieldViolation("job.project", problem)])
            if not self.sees(requested):
                raise PermissionDenied(
                    f"{self.name} may not create jobs in project {quote(requested)}; its projects: {self.projects}",
                    reason="PROJECT_NOT_ALLOWED",
                )
            return requested
        if self.projects.every:
            return DEFAULT_PROJECT
        if len(self.projects.names) == 1:
            return next(iter(self.projects.names))
        raise InvalidArgument(
            [FieldViolation("job.project", f"is required: {self.name} belongs to projects {self.projects}")]
        )


# Without an auth file every call is this caller: the demo, cookbook and clients work unchanged.
LOCAL_CALLER = Caller("local", "admin", EVERY_PROJECT)
