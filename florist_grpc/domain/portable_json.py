"""Report values every JSON reader accepts: a diverging run reports NaN and infinite losses.

JSON has no NaN or Infinity (Python's json and FL4Health write them as bare tokens anyway, which SQLite's JSON
functions, protobuf's JSON parser and browsers reject), so a report stores and streams them as the strings
"NaN", "Infinity" and "-Infinity" (DESIGN.md). `portable` is applied where a report is written (our reporter)
and where one enters the pipeline (ingest), so reports from other reporters are covered too.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from typing import Any

NAN = "NaN"
INFINITY = "Infinity"
NEGATIVE_INFINITY = "-Infinity"


def _name(value: float) -> str:
    if math.isnan(value):
        return NAN
    return INFINITY if value > 0 else NEGATIVE_INFINITY


def _text(value: str) -> str:
    # A lone surrogate ("\ud800" is valid JSON) cannot be encoded as UTF-8, which protobuf strings require.
    try:
        value.encode()
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode()
    return value


def portable(value: Any) -> Any:
    """`value` with every NaN/infinite float as its string name, integers too large for a double (protobuf's
    Struct and JavaScript read them as infinite) as "Infinity"/"-Infinity", and lone surrogates replaced."""
    if isinstance(value, float):
        return value if math.isfinite(value) else _name(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) <= sys.float_info.max else (INFINITY if value > 0 else NEGATIVE_INFINITY)
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {_text(str(key)): portable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [portable(item) for item in value]
    return value


def _constant(token: str) -> str:
    return {"NaN": NAN, "Infinity": INFINITY, "-Infinity": NEGATIVE_INFINITY}[token]


def _float(text: str) -> float | str:
    value = float(text)  # "1e400" is valid JSON and reads as infinity
    return value if math.isfinite(value) else _name(value)


def _int(text: str) -> int | float | str:
    # Only very long digit strings can exceed a double (and int() refuses more than 4,300 digits).
    return int(text) if len(text) < 300 else _float(text)


# A JSON escape of a UTF-16 surrogate (\ud800-\udfff); pairs are joined by json.loads, lone ones are not.
_SURROGATE_TEXT = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")


_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_float, parse_int=_int)
# The C scanner `loads` parses values with: (value, end) for the JSON value at text[index]; StopIteration if there
# is none there, ValueError if it is not JSON. For reading a text piece by piece (metrics/report_text.py).
scan_value: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]


def loads(raw: str | bytes) -> Any:
    """json.loads (which accepts the NaN/Infinity tokens) giving portable values; one pass, no second walk
    unless the text escapes a surrogate. Raises ValueError (RecursionError when nested too deep)."""
    value = json.loads(raw, parse_constant=_constant, parse_float=_float, parse_int=_int)
    surrogate = _SURROGATE_TEXT.search(raw) if isinstance(raw, str) else _SURROGATE_BYTES.search(raw)
    return portable(value) if surrogate else value


def escapes_surrogate(text: str, start: int = 0) -> bool:
    """Whether text[start:] escapes a UTF-16 surrogate: `loads` then makes the whole value portable again."""
    return _SURROGATE_TEXT.search(text, start) is not None


def whole_numbers(value: Any) -> Any:
    """`value` with integral floats as ints. A protobuf Struct carries only doubles: 3 arrives as 3.0, while job
    configs, shapes, counts and labels are integers (exact ones: below 2**53)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    return value
