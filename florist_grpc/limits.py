"""The bounds on what reports, a job's history and an embedded Redis may hold."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one report, one job's history and an embedded Redis may hold. Every bound refuses loudly (a notice in
    the job's events, a failed job, an error to the writer), never by dropping data silently."""

    # One report: a source's whole JSON document, SET again on every change and read whole by the ingest. Ours
    # grow by 0.53 KiB per round (server) and 0.63 KiB (client) (measured on a 25-round job), so 1 MiB holds over
    # 1,500 rounds. A larger one is never read into memory: it is set aside (the source's last stored report
    # stands) with a notice in the job's events.
    report_max_bytes: int = 1 * MiB
    # One job's stored history: the bytes of its events' patches. A job stores about 0.65 KiB per source and round
    # (measured: 1.9 KiB per round for a server and 2 clients), so 64 MiB holds 30,000 rounds of such a job and
    # 8,000 of a 10-client one. A job past it (a site rewriting megabytes every few seconds: 300 reports of 1 MB
    # made 159 MB of store) fails FINISHED_WITH_ERROR naming the bound: its further report changes are refused,
    # and a run going on without a history would be one whose losses nobody can see.
    job_history_max_bytes: int = 64 * MiB
    # One report an agent relays for a client (and the control plane accepts from it): above report_max_bytes, so
    # a report a little over the bound still reaches the control plane, which sets it aside with a notice the
    # user sees; below the gRPC message bound (16 MiB). An agent does not read a larger one (it logs it).
    relayed_report_max_bytes: int = 4 * MiB
    # The embedded Redis (the control plane's and each agent's): `maxmemory`, with `noeviction`, so a report that
    # does not fit is refused to its writer (which fails, saying so) instead of another run's report vanishing.
    # It holds one report per running FL process (and per ended one until its key expires): hundreds at the bound.
    redis_max_memory_bytes: int = 512 * MiB
    # The largest value one Redis command may carry (`proto-max-bulk-len`, at least 1 MiB): a single SET cannot
    # jump over `maxmemory` by hundreds of MiB. Above report_max_bytes, so a report somewhat over the bound is
    # still stored and set aside with a notice rather than refused to its writer.
    redis_max_value_bytes: int = 16 * MiB
