"""A process holding WatchJobs subscribers for bench/platform.py: `python -m bench.watch_holder ADDRESS N`.

Opens N streams from now (grpc.aio, one process, like a platform's fan-in), prints `ready` once every stream has
sent its opening bookmark, records when each change arrives (time.time_ns, per revision and stream), then reads the
last revision from stdin and, once every stream has seen it (or after 60 s), prints the arrivals as one JSON
line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time

import grpc

from florist_grpc.proto.florist.v1 import job_service_pb2 as pb
from florist_grpc.proto.florist.v1 import job_service_pb2_grpc as pb_grpc


async def hold(address: str, count: int) -> None:
    arrivals: list[list[tuple[int, int]]] = [[] for _ in range(count)]
    opened = [asyncio.Event() for _ in range(count)]
    seen = [0] * count
    last = [0]
    caught_up = asyncio.Event()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.JobServiceStub(channel)

        async def watch(index: int) -> None:
            async for response in stub.WatchJobs(pb.WatchJobsRequest()):
                change = response.change
                if change.type == pb.JOB_CHANGE_TYPE_BOOKMARK:
                    opened[index].set()
                    continue
                arrivals[index].append((change.revision, time.time_ns()))
                seen[index] = change.revision
                if last[0] and min(seen) >= last[0]:
                    caught_up.set()

        tasks = [asyncio.create_task(watch(i)) for i in range(count)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 120)
        print("ready", flush=True)
        last[0] = int(await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline))
        if min(seen) < last[0]:
            with contextlib.suppress(TimeoutError):  # what never came is reported as missing
                await asyncio.wait_for(caught_up.wait(), 60)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"arrivals": arrivals}), flush=True)


if __name__ == "__main__":
    asyncio.run(hold(sys.argv[1], int(sys.argv[2])))
