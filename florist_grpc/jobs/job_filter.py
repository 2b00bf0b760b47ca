"""ListJobs `filter`: the AIP-160 subset this service understands, parsed once into a pure predicate.

Grammar: comparisons `FIELD = VALUE` (FIELD one of state, model, strategy, project, owner; VALUE a bare word or a
"quoted" string) joined by AND and OR, where OR binds tighter than AND (as AIP-160 says). A state is named with or
without its `JOB_STATE_` prefix. Anything else is INVALID_ARGUMENT with a field violation on `filter`. A filter only
narrows what the caller sees: the jobs of other projects are never read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from florist_grpc.domain.errors import FieldViolation, InvalidArgument
from florist_grpc.domain.model import Job, JobState

FIELDS = ("state", "model", "strategy", "project", "owner")
TOKEN = re.compile(r'\s*(?:(?P<quoted>"[^"]*")|(?P<op>=)|(?P<word>[A-Za-z0-9_.\-]+)|(?P<bad>\S))')


def _invalid(description: str) -> InvalidArgument:
    return InvalidArgument([FieldViolation("filter", description)])


@dataclass(frozen=True)
class Comparison:
    field: str
    value: str

    def matches(self, job: Job) -> bool:
        if self.field == "state":
            return job.state.name == self.value
        return str(getattr(job, self.field)) == self.value


@dataclass(frozen=True)
class JobFilter:
    """AND of ORs of comparisons; the empty filter matches every job."""

    clauses: tuple[tuple[Comparison, ...], ...] = ()

    def matches(self, job: Job) -> bool:
        return all(any(c.matches(job) for c in clause) for clause in self.clauses)

    @property
    def only_state(self) -> JobState | None:
        """The one state this filter selects when that is all it says (the store can then do the work)."""
        if len(self.clauses) == 1 and len(self.clauses[0]) == 1 and self.clauses[0][0].field == "state":
            return JobState[self.clauses[0][0].value]
        return None


def _tokens(text: str) -> list[str]:
    out = []
    for match in TOKEN.finditer(text):
        if match.group("bad"):
            raise _invalid(f"unexpected {match.group('bad')!r}; write FIELD = VALUE joined by AND / OR")
        out.append(match.group("quoted") or match.group("op") or match.group("word"))
    return out


def _state(value: str) -> str:
    name = value.upper().removeprefix("JOB_STATE_")
    if name not in JobState.__members__ or name == "UNSPECIFIED":
        known = ", ".join(s.name for s in JobState if s is not JobState.UNSPECIFIED)
        raise _invalid(f"unknown state {value!r}; one of {known}")
    return name


def parse(text: str) -> JobFilter:
    """The filter `text` stands for; InvalidArgument naming what is wrong."""
    tokens = _tokens(text)
    clauses: list[tuple[Comparison, ...]] = []
    current: list[Comparison] = []
    position = 0
    while position < len(tokens):
        if len(tokens) - position < 3 or tokens[position + 1] != "=":
            raise _invalid(f"expected FIELD = VALUE at {' '.join(tokens[position:]) or 'the end'!r}")
        field, value = tokens[position].lower(), tokens[position + 2]
        if field not in FIELDS:
            raise _invalid(f"cannot filter on {tokens[position]!r}; fields: {', '.join(FIELDS)}")
        value = value[1:-1] if value.startswith('"') else value
        current.append(Comparison(field, _state(value) if field == "state" else value))
        position += 3
        if position == len(tokens):
            break
        joiner = tokens[position]
        if joiner not in ("AND", "OR") or position + 1 == len(tokens):
            raise _invalid(f"expected AND or OR followed by a comparison, not {' '.join(tokens[position:])!r}")
        if joiner == "AND":
            clauses.append(tuple(current))
            current = []
        position += 1
    if current:
        clauses.append(tuple(current))
    return JobFilter(tuple(clauses))
