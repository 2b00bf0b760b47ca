"""What a data file holds, read on the machine that has it: `probe(path, label_column) -> dict`.

`python -m florist_grpc.fl.probe '[["/data/c0.pt", ""], ["/data/c1.csv", "target"]]'` prints one JSON list of
summaries, in order. The control plane runs it in a subprocess for its local clients (it never imports torch
itself); an agent can run the same module for its own clients and hand back the same summaries.

A summary: {"path", "n", "input_shape", "label_min", "label_max", "problems"}; `problems` lists why the file
cannot be trained on (empty when usable), by the kind of problem and never quoting the file (fl/data.py); the
other fields are null when they could not be read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from florist_grpc.fl.data import DataError, check_arrays, read_arrays


def probe(path: str, label_column: str = "") -> dict[str, Any]:
    """Read one data file and summarise it (never raises for a bad file: it reports the problem)."""
    summary: dict[str, Any] = {
        "path": path,
        "n": None,
        "input_shape": None,
        "label_min": None,
        "label_max": None,
        "problems": [],
    }
    try:
        x, y = read_arrays(Path(path), label_column)
    except DataError as exc:
        summary["problems"] = [str(exc)]
        return summary
    except Exception as exc:  # a reader we did not foresee failing: still a bad file, not a crash
        # Its kind only: a reader's own text can quote the file, and the caller may not be allowed to read it.
        summary["problems"] = [f"data file {path} is unreadable ({type(exc).__name__})"]
        return summary
    summary["problems"] = check_arrays(Path(path), x, y)
    summary["n"] = int(x.shape[0]) if x.ndim else 0
    summary["input_shape"] = [int(d) for d in x.shape[1:]]
    if y.dtype.kind in "iu" and y.size:
        summary["label_min"], summary["label_max"] = int(y.min()), int(y.max())
    return summary


def main() -> None:
    files = json.loads(sys.argv[1])
    json.dump([probe(str(path), str(label)) for path, label in files], sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
