"""Whose log a StreamLogs request names (jobs/logs.py): the server's, or a client's by index or by run uuid."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from florist_grpc.domain.errors import InvalidArgument
from florist_grpc.domain.model import (
    SERVER_SOURCE,
    Client,
    ClientLogByIndex,
    ClientLogByUuid,
    Job,
    LogSource,
    ServerLog,
    Source,
    SourceKind,
)
from florist_grpc.jobs.logs import log_owner

# Two clients: the first has run (it has a uuid), the second has not yet.
JOB = Job(
    id="j1",
    model="MLP",
    strategy="FEDAVG",
    optimizer="SGD",
    client_type="FEDAVG",
    server_config={},
    clients=[Client("a.csv", uuid="u0"), Client("b.csv")],
    create_time=datetime(2024, 1, 1, tzinfo=UTC),
)


@pytest.mark.parametrize(
    ("source", "owner"),
    [
        (ServerLog(), SERVER_SOURCE),
        (ClientLogByIndex(0), Source(SourceKind.CLIENT, 0, "u0")),
        (ClientLogByIndex(1), Source(SourceKind.CLIENT, 1, "")),
        (ClientLogByUuid("u0"), Source(SourceKind.CLIENT, 0, "u0")),
    ],
)
def test_a_log_source_names_one_process_of_the_job(source: LogSource, owner: Source) -> None:
    assert log_owner(JOB, source) == owner


@pytest.mark.parametrize(
    ("source", "field"),
    [
        (ClientLogByIndex(2), "source.client_index"),
        (ClientLogByIndex(-1), "source.client_index"),
        (ClientLogByUuid("other"), "source.client_uuid"),
        (ClientLogByUuid(""), "source.client_uuid"),  # a client not started yet has no uuid to match
    ],
)
def test_a_source_naming_no_process_of_the_job_is_invalid_naming_its_field(source: LogSource, field: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        log_owner(JOB, source)
    assert [v.field for v in raised.value.violations] == [field]
