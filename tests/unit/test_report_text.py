"""Reading a report from its text, parsing only what changed: the same report and the same merge patch as parsing
it whole and diffing it whole (portable_json.loads + merge_patch.diff), on any sequence of texts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from florist_grpc.domain import merge_patch, portable_json
from florist_grpc.fl.reporter import RedisReporter, encode
from florist_grpc.metrics.report_text import MAX_REPORT_DEPTH, Kept, Read, Unusable, read, too_deep
from florist_grpc.testing.simulation import SimulatedJob, play_fl4health_rounds


def reference(raw: bytes, baseline: dict[str, Any]) -> Read | Unusable:
    """What the ingest did before reading piecewise: parse whole, check, diff whole."""
    try:
        report = portable_json.loads(raw)
    except (ValueError, RecursionError):
        return Unusable("it is not JSON")
    if not isinstance(report, dict):
        return Unusable("it is not a JSON object")
    if too_deep(report, MAX_REPORT_DEPTH):
        return Unusable(f"it is nested deeper than {MAX_REPORT_DEPTH} levels")
    return Read(report, merge_patch.diff(baseline, report), None)


def exact(value: Any) -> str:
    """Types (1, 1.0, true), key order and NaN told apart."""
    return json.dumps(value)


def read_all(texts: list[bytes]) -> list[Read | Unusable]:
    """Read a source's texts in order as the ingest does: a usable read becomes the baseline (and what it kept)."""
    baseline: dict[str, Any] = {}
    kept: Kept | None = None
    out: list[Read | Unusable] = []
    for raw in texts:
        result = read(raw, baseline, kept)
        expected = reference(raw, baseline)
        if isinstance(expected, Unusable):
            assert result == expected
        else:
            assert isinstance(result, Read)
            assert exact(result.report) == exact(expected.report)
            assert exact(result.patch) == exact(expected.patch)
            rebuilt = merge_patch.apply(baseline, result.patch)
            assert json.dumps(rebuilt, sort_keys=True) == json.dumps(result.report, sort_keys=True)
            baseline, kept = result.report, result.kept
        out.append(result)
    return out


class Recording(RedisReporter):
    """A reporter that keeps every text it would have written to Redis."""

    def __init__(self) -> None:  # no Redis
        self.report: dict[str, Any] = {}
        self.uuid = "u"
        self.texts: list[bytes] = []

    def _publish(self) -> None:
        self.texts.append(encode(self.report).encode())


def fl4health_texts(rounds: int) -> dict[str, list[bytes]]:
    server, clients = Recording(), [Recording(), Recording()]
    play_fl4health_rounds(SimulatedJob("", server, list(clients)), rounds)
    return {"server": server.texts, **{f"client{i}": c.texts for i, c in enumerate(clients)}}


def test_fl4health_reports_read_piecewise_are_the_whole_reports() -> None:
    for texts in fl4health_texts(30).values():
        read_all(texts)


def test_a_new_round_reuses_the_last_reports_rounds_and_patches_only_itself() -> None:
    texts = fl4health_texts(20)["client0"]
    results = read_all(texts)
    before, after = results[-3], results[-2]  # round 20's evaluation, after its fit
    assert isinstance(before, Read) and isinstance(after, Read)
    assert set(after.patch) == {"rounds"} and set(after.patch["rounds"]) == {"20"}
    for n in range(1, 20):
        assert after.report["rounds"][str(n)] is before.report["rounds"][str(n)]  # not parsed again
    assert after.kept is not None


def test_an_unchanged_text_is_no_change_and_the_same_report() -> None:
    raw = b'{"a": 1, "rounds": {"1": {"x": 2}}}'
    first = read(raw, {}, None)
    assert isinstance(first, Read) and first.kept is not None
    again = read(raw, first.report, first.kept)
    assert isinstance(again, Read) and again.patch == {} and again.report is first.report


def test_what_was_kept_for_another_baseline_is_not_used() -> None:
    first = read(b'{"a": 1, "b": 2}', {}, None)
    assert isinstance(first, Read)
    stored = {"a": 1}  # e.g. the change was set aside: the baseline is still the report before it
    second = read(b'{"a": 1, "b": 2, "c": 3}', stored, first.kept)
    assert isinstance(second, Read) and second.patch == {"b": 2, "c": 3}


EDGE_SEQUENCES = [
    # type changes the values compare equal across (1, 1.0, True) and a number that grows at the difference
    [b'{"a": 1, "b": {"x": 1}}', b'{"a": 1.0, "b": {"x": true}}', b'{"a": 12, "b": {"x": 1}}', b'{"a": 123}'],
    # whitespace, removals, an object turning into a number and back
    [
        b'{"r": {"1": {"a": 1}, "2": {"b": 2}}, "z": 0}',
        b'{ "r" : {"1": {"a": 1}} , "z": 0 }',
        b'{"r": 5}',
        b'{"r": {}}',
    ],
    # duplicate keys: json keeps the last value where the first was
    [b'{"r": {"1": 1, "2": 2}}', b'{"r": {"1": 1, "2": 2, "1": 3}}', b'{"r": {"1": 1}, "r": {"2": 2}}'],
    # not JSON, not an object, trailing data, a lone surrogate, non-ASCII, NaN and overflowing numbers
    [b'{"a": 1}', b'{"a": 1', b"[1]", b'{"a": 1} x', b'{"a": "\\ud800"}', '{"a": "é", "b": 1}'.encode()],
    ['{"a": "é", "b": 1}'.encode(), '{"a": "é", "b": 2, "c": "ü"}'.encode(), b'{"a": NaN, "b": 1e400, "c": -Infinity}'],
    # a difference inside a character of several bytes; a text that begins the last one
    [
        '{"a": "é", "r": {"1": "é"}}'.encode(),
        '{"a": "é", "r": {"1": "è"}}'.encode(),
        '{"a": "é", "r": {"1": "è"}} '.encode(),
        '{"a": "é", "r": {"1": "è"}}'.encode(),
    ],
    # an escaped surrogate right where it changed, after characters of several bytes
    ['{"a": "ééééééééééééééééééééé", "r": {"1": "x"}}'.encode(), b'{"a": "\xc3\xa9", "r": {"1": "x"}}'],
    [
        '{"a": "ééééééééééééééééééééé", "r": {"1": "x"}}'.encode(),
        '{"a": "ééééééééééééééééééééé", "r": {"1": "x", "2": "\\ud800"}}'.encode(),
    ],
    # broken where it changed: after a member, inside a value, a key that is not a string
    [
        b'{"a": 1, "r": {"1": 2}}',
        b'{"a": 1, "r": {"1": 2 x}}',
        b'{"a": 1, "r": {"1": tru}}',
        b'{"a": 1, "r": {"1": 2, 3: 4}}',
        b'{"a": 1, "r": {"1": 2} "b": 1}',
        b'{"a": 1, "r": {"1": 2}, "b" 1}',
        b'{"a": 1, "r": {"1": 2}, "b": 1}',
    ],
    [b'{"a": 1e400, "r": {"1": 1}}', b'{"a": 1e400, "r": {"1": 1, "2": 1e999}}', b"\xef\xbb\xbf{}", b'{"a": {}}'],
]


@pytest.mark.parametrize("texts", EDGE_SEQUENCES)
def test_edge_cases_read_as_whole_reports(texts: list[bytes]) -> None:
    read_all(texts)


def test_a_report_too_deep_is_unusable_wherever_it_grew() -> None:
    deep: Any = 1
    for _ in range(MAX_REPORT_DEPTH):
        deep = {"d": deep}
    texts = [b'{"r": {"1": 1}}', json.dumps({"r": {"1": 1, "2": deep}}).encode(), b'{"r": {"1": 1, "2": 2}}']
    results = read_all(texts)
    assert results[1] == Unusable(f"it is nested deeper than {MAX_REPORT_DEPTH} levels")


json_leaves = st.one_of(
    st.integers(-3, 3), st.sampled_from([0.5, 1.0, -0.0, 1e300]), st.booleans(), st.sampled_from(["s", "t", "é"])
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abcr12"), inner, max_size=4),
    max_leaves=12,
)
reports = st.dictionaries(st.sampled_from(["a", "b", "rounds", "z", "é"]), json_values, max_size=5)


@settings(max_examples=150, deadline=None)
@given(st.lists(reports, min_size=1, max_size=8), st.sampled_from([(", ", ": "), (",", ":")]))
def test_any_sequence_of_reports_reads_as_whole_reports(sequence: list[dict[str, Any]], separators: Any) -> None:
    read_all([json.dumps(r, separators=separators, ensure_ascii=False).encode() for r in sequence])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), json_values), min_size=1, max_size=20))
def test_growing_rounds_read_as_whole_reports(edits: list[tuple[int, Any]]) -> None:
    report: dict[str, Any] = {"host_type": "client", "rounds": {}}
    texts = []
    for n, value in edits:
        report["rounds"].setdefault(str(n), {})["v"] = value
        if n % 7 == 0:
            report[f"top{n}"] = value
        texts.append(json.dumps(report).encode())
    read_all(texts)
