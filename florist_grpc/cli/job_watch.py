"""`job list --watch`: the jobs, then every change to them as it comes, like `kubectl get -w`.

List-then-watch as DESIGN.md says a client does it: list every page, watch from the first page's revision, drop
changes at or below the revision of the job already shown. A lost connection is resumed from the last revision
seen (a change or a bookmark); a revision the server no longer keeps (OUT_OF_RANGE) lists again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import grpc

from florist_grpc.cli.events import RECONNECT_SECONDS, RETRY_PAUSE_SECONDS, RETRYABLE
from florist_grpc.cli.options import CALL_SECONDS, Connection, Output
from florist_grpc.cli.output import print_json
from florist_grpc.progress import state_name
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import job_service_pb2 as pb
from florist_grpc.proto.florist.v1 import job_service_pb2_grpc as pb_grpc

ShowList = Callable[[list[job_pb2.Job]], None]
CHANGE_NAMES = {
    pb.JOB_CHANGE_TYPE_ADDED: "ADDED",
    pb.JOB_CHANGE_TYPE_MODIFIED: "MODIFIED",
    pb.JOB_CHANGE_TYPE_DELETED: "DELETED",
}


def change_line(change: pb.JobChange) -> str:
    """One change as a line: what happened, to which job, its state, project, owner and round."""
    job = change.job
    return (
        f"{CHANGE_NAMES.get(change.type, '?'):<8}  {job.id}  {state_name(job.state):<21}  "
        f"{job.project}  {job.owner or '-'}  round {job.current_round}  revision {change.revision}"
    )


def watch_filter(state: int, filter_text: str) -> str:
    """ListJobs' state and filter as one WatchJobs filter (AND binds looser than OR, so a filter's ORs stay)."""
    if state == job_pb2.JOB_STATE_UNSPECIFIED:
        return filter_text
    named = f"state = {job_pb2.JobState.Name(job_pb2.JobState.ValueType(state))}"
    return f"{named} AND {filter_text}" if filter_text else named


def list_pages(
    stub: pb_grpc.JobServiceStub, conn: Connection, request: pb.ListJobsRequest
) -> Iterator[pb.ListJobsResponse]:
    while True:
        page = stub.ListJobs(request, metadata=conn.metadata, timeout=CALL_SECONDS)
        yield page
        if not page.next_page_token:
            return
        request = pb.ListJobsRequest(
            page_size=request.page_size,
            page_token=page.next_page_token,
            state=request.state,
            filter=request.filter,
            view=request.view,
        )


def watch_jobs(conn: Connection, request: pb.ListJobsRequest, output: Output, show_list: ShowList) -> None:
    """List, then follow until interrupted. `show_list(jobs)` draws the listing in text output."""
    channel = conn.channel()
    held: dict[str, int] = {}  # job id -> the revision of it shown last
    after = 0
    lost_since: float | None = None
    try:
        while True:
            stub = pb_grpc.JobServiceStub(channel)
            if not after:
                after = _list(stub, conn, request, output, show_list, held)
            watch = pb.WatchJobsRequest(
                filter=watch_filter(request.state, request.filter), after_revision=after, view=request.view
            )
            try:
                for response in stub.WatchJobs(watch, metadata=conn.metadata):
                    lost_since = None
                    after = max(after, response.change.revision)
                    _show(response, output, held)
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.Call) else None
                if code == grpc.StatusCode.OUT_OF_RANGE:
                    after = 0  # the server no longer keeps our position: list again
                    continue
                now = time.monotonic()
                lost_since = now if lost_since is None else lost_since
                if code not in RETRYABLE or now - lost_since > RECONNECT_SECONDS:
                    raise
                time.sleep(RETRY_PAUSE_SECONDS)  # back-off between attempts against a server that is down
                channel.close()
                channel = conn.channel()
    finally:
        channel.close()


def _list(
    stub: pb_grpc.JobServiceStub,
    conn: Connection,
    request: pb.ListJobsRequest,
    output: Output,
    show_list: ShowList,
    held: dict[str, int],
) -> int:
    """Every page; the first page's revision (watched from)."""
    pages = list(list_pages(stub, conn, request))
    jobs = [job for page in pages for job in page.jobs]
    held.clear()
    held.update({job.id: job.revision for job in jobs})
    if output == Output.json:
        for page in pages:
            print_json(page)
    else:
        show_list(jobs)
    return pages[0].revision


def _show(response: pb.WatchJobsResponse, output: Output, held: dict[str, int]) -> None:
    change = response.change
    if change.type == pb.JOB_CHANGE_TYPE_BOOKMARK:
        if output == Output.json:
            print_json(response)
        return
    if change.revision <= held.get(change.job.id, 0):
        return  # the listing already showed it
    if change.type == pb.JOB_CHANGE_TYPE_DELETED:
        held.pop(change.job.id, None)
    else:
        held[change.job.id] = change.revision
    if output == Output.json:
        print_json(response)
    else:
        print(change_line(change), flush=True)
