"""One running control plane for every hostile-input test of a module (they only ever get errors back)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import PlaneThread


@pytest.fixture(scope="module")
def hostile_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaneThread]:
    running = PlaneThread(tmp_path_factory.mktemp("hostile") / "florist")
    yield running
    running.stop()
