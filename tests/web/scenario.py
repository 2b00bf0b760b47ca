"""A browser scenario (clients/web/test/NAME) the test talks to while it runs: the scenario prints a step's name
and waits; the test acts outside the page (over gRPC) and answers with one line. Each wait is bounded."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pytest

WEB = Path(__file__).resolve().parents[2] / "clients" / "web"
CHROMIUM = Path("/usr/bin/chromium")

needs_browser = pytest.mark.skipif(
    not CHROMIUM.exists() or not (WEB / "node_modules" / "playwright-core").exists() or shutil.which("node") is None,
    reason="needs /usr/bin/chromium (tools/install-system-deps.sh, as root) and clients/web's npm packages",
)


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)  # end of output


class Scenario:
    def __init__(self, name: str, **env: str) -> None:
        self._process = subprocess.Popen(
            ["node", str(WEB / "test" / name)],
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None and self._process.stderr is not None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._errors: queue.Queue[str | None] = queue.Queue()
        for stream, lines in ((self._process.stdout, self._lines), (self._process.stderr, self._errors)):
            threading.Thread(target=_pump, args=(stream, lines), daemon=True).start()
        self._last = ""

    def _next_line(self, timeout: float) -> str | None:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the scenario said nothing for {timeout} s after {self._last!r}") from None

    def _stderr(self) -> str:
        lines: list[str] = []
        while (line := self._errors.get(timeout=10)) is not None:
            lines.append(line)
        return "\n".join(lines)

    def expect(self, step: str, timeout: float = 60) -> None:
        """Wait until the scenario reaches `step` (and waits for the answer)."""
        line = self._next_line(timeout)
        if line is None:
            self._process.wait(10)
            raise AssertionError(f"the scenario ended before {step!r}:\n{self._stderr()}")
        assert line == step, f"expected step {step!r}, the scenario said {line!r}"
        self._last = step

    def answer(self, line: str = "") -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(line + "\n")
        self._process.stdin.flush()

    def result(self, timeout: float = 60) -> dict[str, Any]:
        """The JSON the scenario prints last, once it exited 0."""
        line = self._next_line(timeout)
        code = self._process.wait(timeout)
        assert code == 0 and line is not None, f"the scenario failed:\n{self._stderr()}"
        result: dict[str, Any] = json.loads(line)
        return result

    def __enter__(self) -> Scenario:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._process.poll() is None:
            self._process.kill()  # a failed test leaves no browser behind
            self._process.wait(10)
