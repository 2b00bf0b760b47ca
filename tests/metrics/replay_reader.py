"""`python -m tests.metrics.replay_reader ADDRESS JOB_ID STREAMS`: opens STREAMS StreamMetrics calls at once, reads
each to its end and prints, as JSON, the sequences each received (run apart from the control plane under test, so
the two do not share one interpreter's lock)."""

from __future__ import annotations

import asyncio
import json
import sys

import grpc

from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as pb_grpc


async def replay_all(address: str, job_id: str, streams: int) -> list[list[int]]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.TrainingServiceStub(channel)

        async def one() -> list[int]:
            call = stub.StreamMetrics(pb.StreamMetricsRequest(job_id=job_id), timeout=120)
            return [response.event.sequence async for response in call]

        return await asyncio.gather(*(one() for _ in range(streams)))


if __name__ == "__main__":
    print(json.dumps(asyncio.run(replay_all(sys.argv[1], sys.argv[2], int(sys.argv[3])))))
