"""A source's next report read from its text: the report and its merge patch, parsing only what changed.

Reports are whole snapshots (fl/reporter.py) that grow at their end: a new round, a new key in the last round. The
next report's text is the last one's up to near its end. So the last text is kept (`Kept`) with where each
top-level member, and each member of one top-level object (`rounds`, once a change falls inside it), begins and
ends. The next text is compared with it byte for byte (C speed), and only what follows the first difference is
parsed (portable_json's scanner, json's C scanner) and diffed: a member that ends before the difference is the same
text, so the same value, and the last report's object is reused, neither parsed nor walked again. The cost of a
change is what changed, not the report, which in a long job holds hundreds of rounds.

Anything this does not expect takes the whole path: the text parsed as portable_json.loads parses it and the
report diffed whole (merge_patch.diff). That is a duplicate key, an escaped surrogate, an encoding other than
UTF-8, a difference before the first member or anything not JSON, and also the first report of a source. Both
paths give the same report and the same patch (tests/unit/test_report_text.py holds them side by side).
"""

from __future__ import annotations

import bisect
import json
import re
from _json import scanstring  # json's own C string scanner (json.decoder uses it)
from dataclasses import dataclass
from itertools import islice
from typing import Any

from florist_grpc.domain import merge_patch, portable_json
from florist_grpc.domain.model import JsonObject

# Deepest report accepted: a JSON level is three protobuf message levels (Struct, map entry, Value), and protobuf
# decoders refuse more than 100 by default, so a report over ~32 levels could be stored but never decoded by
# the clients of StreamMetrics or GetJob. FL4Health's are 4 deep.
MAX_REPORT_DEPTH = 24
# The difference is looked for in the last bytes first: reports grow at their end.
_TAIL_BYTES = 4096
_SPACE = re.compile(r"[ \t\n\r]*")  # JSON's whitespace, as json.decoder skips it


@dataclass(slots=True)
class Member:
    """A member of a JSON object in a report's text: its key at `start`, its value from `value_start` to `end`."""

    key: str
    start: int
    value_start: int
    end: int
    members: list[Member] | None = None  # an object value's own members, once they were needed


@dataclass(frozen=True, slots=True)
class Kept:
    """A report as read, kept for reading its source's next one: its text, its value and where its members are."""

    raw: bytes
    report: JsonObject
    opened: int  # just past the top level's "{"
    members: list[Member]


@dataclass(frozen=True, slots=True)
class Read:
    """A report read: its value, the merge patch from the baseline to it, and what to keep for the next read."""

    report: JsonObject
    patch: JsonObject
    kept: Kept | None


@dataclass(frozen=True, slots=True)
class Unusable:
    """Why a report cannot be stored or streamed."""

    reason: str


class _Whole(Exception):
    """The text is not what the piecewise reading expects: read it whole."""


def read(raw: bytes, baseline: JsonObject, kept: Kept | None) -> Read | Unusable:
    """The report in `raw` and its merge patch from `baseline` (the source's last persisted report). `kept` is
    what the read of `baseline` kept; it is used only if it is the read of that very report."""
    if kept is not None and kept.report is baseline:
        if raw == kept.raw:
            return Read(baseline, {}, kept)
        try:
            return _next(raw, kept)
        except _Whole:
            pass
    return _whole(raw, baseline)


def too_deep(value: dict[str, Any] | list[Any], levels: int) -> bool:
    """Whether a JSON object or array nests more than `levels` levels (itself counting as one)."""
    if levels <= 0:
        return True
    for item in value.values() if isinstance(value, dict) else value:
        if isinstance(item, dict | list) and too_deep(item, levels - 1):
            return True
    return False


def _whole(raw: bytes, baseline: JsonObject) -> Read | Unusable:
    try:
        report, kept = _indexed(raw)
    except _Whole:
        kept = None
        try:
            report = portable_json.loads(raw)
        except (ValueError, RecursionError):
            return Unusable("it is not JSON")
        if not isinstance(report, dict):
            return Unusable("it is not a JSON object")
    if too_deep(report, MAX_REPORT_DEPTH):
        return Unusable(f"it is nested deeper than {MAX_REPORT_DEPTH} levels")
    return Read(report, merge_patch.diff(baseline, report), kept)


def _text(raw: bytes) -> str:
    """The text json.loads would read from `raw`, if it is UTF-8. Raises _Whole."""
    if json.detect_encoding(raw) != "utf-8":
        raise _Whole
    return raw.decode("utf-8", "surrogatepass")


def _check_surrogates(text: str, start: int = 0) -> None:
    """Raise _Whole if text[start:] escapes a surrogate: `loads` then makes the whole report portable again."""
    if portable_json.escapes_surrogate(text, start):
        raise _Whole


def _indexed(raw: bytes) -> tuple[JsonObject, Kept]:
    """The whole report, parsed member by member so that where each one is is known. Raises _Whole."""
    text = _text(raw)
    _check_surrogates(text)
    start = _skip(text, 0)
    if not text.startswith("{", start):
        raise _Whole
    report: JsonObject = {}
    members, end = _members(text, start + 1, True, report)
    if _skip(text, end) != len(text):
        raise _Whole
    return report, Kept(raw, report, start + 1, members)


def _next(raw: bytes, kept: Kept) -> Read:
    """The next report from the last one's `kept` reading: only what follows their first difference is parsed.
    Raises _Whole."""
    text = _text(raw)
    same = _same_chars(raw, _same_bytes(kept.raw, raw), text)
    if same < kept.opened:
        raise _Whole
    # The text before the difference was looked at in the last one; an escape it cuts (\u00e9 -> \ud800) not.
    _check_surrogates(text, max(0, same - len("\\ud800")))
    old = kept.report
    i = _unchanged(kept.members, same, text)
    report: JsonObject = dict(islice(old.items(), i))  # the same members as the same values
    members = kept.members[:i]
    inner: tuple[str, JsonObject] | None = None
    if i < len(kept.members) and same > kept.members[i].value_start and isinstance(old[kept.members[i].key], dict):
        # The difference is inside this member's object (`rounds`): keep its unchanged members too.
        member = kept.members[i]
        value, inner_patch, end, inner_members = _next_object(text, kept, member, same)
        report[member.key] = value
        members.append(Member(member.key, member.start, member.value_start, end, inner_members))
        inner = (member.key, inner_patch)
        resume, first, i = end, False, i + 1
    else:
        resume, first = (members[-1].end, False) if members else (kept.opened, True)
    tail: JsonObject = {}
    more, end = _members(text, resume, first, tail, report)
    if _skip(text, end) != len(text) or any(_deep(v, MAX_REPORT_DEPTH - 1) for v in tail.values()):
        raise _Whole
    report.update(tail)
    patch: JsonObject = {m.key: None for m in kept.members[i:] if m.key not in report}  # diff's order
    if inner is not None and inner[1]:
        patch[inner[0]] = inner[1]
    merge_patch.add_changes(patch, old, tail)
    return Read(report, patch, Kept(raw, report, kept.opened, members + more))


def _next_object(text: str, kept: Kept, member: Member, same: int) -> tuple[JsonObject, JsonObject, int, list[Member]]:
    """The new value of `member`'s object, its merge patch, its end and its members, from what of it is unchanged.
    Raises _Whole."""
    old: JsonObject = kept.report[member.key]
    inner = member.members
    if inner is None:  # first time a change falls inside it: where its members are in the last text
        inner, end = _members(_text(kept.raw), member.value_start + 1, True, {})
        if end != member.end or len(inner) != len(old):
            raise _Whole
    k = _unchanged(inner, same, text)
    value: JsonObject = dict(islice(old.items(), k))
    resume, first = (inner[k - 1].end, False) if k else (member.value_start + 1, True)
    tail: JsonObject = {}
    more, end = _members(text, resume, first, tail, value)
    if any(_deep(v, MAX_REPORT_DEPTH - 2) for v in tail.values()):
        raise _Whole
    value.update(tail)
    patch: JsonObject = {m.key: None for m in inner[k:] if m.key not in value}
    merge_patch.add_changes(patch, old, tail)
    return value, patch, end, inner[:k] + more


def _deep(value: Any, levels: int) -> bool:
    return isinstance(value, dict | list) and too_deep(value, levels)


def _unchanged(members: list[Member], same: int, text: str) -> int:
    """How many of `members` lie wholly before the first difference, at `same`: the character after a value must
    be the same too (a number may go on), unless the value closes itself (an object, array or string)."""
    i = bisect.bisect_left(members, same, key=lambda m: m.end)
    if i < len(members) and members[i].end == same and text[same - 1] in '}]"':
        i += 1
    return i


def _skip(text: str, i: int) -> int:
    match = _SPACE.match(text, i)
    assert match is not None  # `*` matches the empty string
    end: int = match.end()
    return end


def _members(
    text: str, i: int, first: bool, into: JsonObject, before: JsonObject | None = None
) -> tuple[list[Member], int]:
    """Parse an object's members from `i` (just past its "{" if `first`, else just past a member's value) into
    `into`, up to its "}": the members and the position past the "}". A key already in `into` or `before` (a
    duplicate, which json keeps where it first was) or anything not JSON raises _Whole."""
    members: list[Member] = []
    i = _skip(text, i)
    if first and text.startswith("}", i):
        return members, i + 1
    if not first:
        if text.startswith("}", i):
            return members, i + 1
        if not text.startswith(",", i):
            raise _Whole
        i = _skip(text, i + 1)
    try:
        while True:
            if not text.startswith('"', i):
                raise _Whole
            key, j = scanstring(text, i + 1, True)
            j = _skip(text, j)
            if not text.startswith(":", j):
                raise _Whole
            j = _skip(text, j + 1)
            value, end = portable_json.scan_value(text, j)
            if key in into or (before is not None and key in before):
                raise _Whole
            into[key] = value
            members.append(Member(key, i, j, end))
            i = _skip(text, end)
            if text.startswith("}", i):
                return members, i + 1
            if not text.startswith(",", i):
                raise _Whole
            i = _skip(text, i + 1)
    except (ValueError, StopIteration, RecursionError) as exc:
        raise _Whole from exc


def _same_chars(new: bytes, same: int, text: str) -> int:
    """How many characters of `text`, decoded from `new`, its first `same` bytes hold."""
    if len(text) == len(new):  # ASCII: a character is a byte
        return same
    if same == len(new):
        return len(text)
    while same and new[same] & 0xC0 == 0x80:  # back to the start of a character
        same -= 1
    return len(new[:same].decode("utf-8", "surrogatepass"))


def _same_bytes(a: bytes, b: bytes) -> int:
    """The length of the longest common prefix of `a` and `b`."""
    n = min(len(a), len(b))
    lo = 0
    if n > _TAIL_BYTES and a[: n - _TAIL_BYTES] == b[: n - _TAIL_BYTES]:
        lo = n - _TAIL_BYTES
    if a[lo:n] == b[lo:n]:
        return n
    hi = n  # a[:lo] == b[:lo] and a[lo:hi] != b[lo:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo
