"""The replay gate: a bounded number of streams replay at once, in arrival order, and a stalled one steps aside."""

from __future__ import annotations

import asyncio

from florist_grpc.metrics.replay_gate import ReplayGate


def test_slots_are_handed_over_in_arrival_order() -> None:
    async def scenario() -> list[str]:
        gate = ReplayGate(slots=1, stall_seconds=60)
        order: list[str] = []
        first = gate.lease()
        await first.hold()

        async def replay(name: str) -> None:
            lease = gate.lease()
            await lease.hold()
            order.append(name)
            lease.release()

        waiting = [asyncio.create_task(replay(name)) for name in "abc"]
        await asyncio.sleep(0)
        assert (gate.replaying, gate.waiting) == (1, 3)
        first.release()
        await asyncio.gather(*waiting)
        return order

    assert asyncio.run(scenario()) == ["a", "b", "c"]


def test_a_stalled_holder_gives_its_slot_to_the_next_stream() -> None:
    async def scenario() -> tuple[bool, bool]:
        gate = ReplayGate(slots=1, stall_seconds=0.05)
        stalled = gate.lease()
        await stalled.hold()  # and never holds again: its reader stopped reading
        waiting = gate.lease()
        await asyncio.wait_for(waiting.hold(), 5)
        return stalled.active, waiting.active

    assert asyncio.run(scenario()) == (False, True)


def test_a_stream_cancelled_while_waiting_does_not_take_a_slot() -> None:
    async def scenario() -> tuple[int, bool]:
        gate = ReplayGate(slots=1, stall_seconds=60)
        holder = gate.lease()
        await holder.hold()
        gone = asyncio.create_task(gate.lease().hold())
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
        holder.release()
        last = gate.lease()
        await asyncio.wait_for(last.hold(), 5)
        return gate.replaying, last.active

    assert asyncio.run(scenario()) == (1, True)
