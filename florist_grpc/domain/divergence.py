"""A diverged run: when a round counts as diverged, and how the FL server's report says that it stopped there.

The FL server writes the key, the control plane's ending policy reads it: both sides use this module, so the
key's name and the error message exist once. The key is an extra top-level key of FLorist's server report
(extra keys are allowed; the FLorist layout stays as it is).
"""

from __future__ import annotations

import math
from typing import Any

from florist_grpc.domain.portable_json import portable

# Top-level key of the server report, present only when the server stopped the run because it diverged:
# {"round": 1, "loss": "NaN"} (the loss as reported: "NaN", "Infinity" or "-Infinity").
DIVERGED = "diverged"


def diverged(aggregated_loss: float | None, losses_reported: int) -> bool:
    """A round diverges when its aggregated loss is non-finite while at least one client reported a loss for it
    (a round nobody evaluated has no loss to judge: it is not a divergence)."""
    return losses_reported > 0 and aggregated_loss is not None and not math.isfinite(aggregated_loss)


def divergence_report(server_round: int, aggregated_loss: float) -> dict[str, Any]:
    """The value of the report's `diverged` key."""
    return {"round": server_round, "loss": portable(aggregated_loss)}


def divergence_message(server_report: dict[str, Any]) -> str | None:
    """The job's error message if the server stopped a diverged run, else None."""
    divergence = server_report.get(DIVERGED)
    if not isinstance(divergence, dict):
        return None
    server_round, loss = divergence.get("round"), portable(divergence.get("loss"))
    if isinstance(server_round, float) and server_round.is_integer():
        server_round = int(server_round)  # a report that went through a protobuf Struct holds doubles
    return f"diverged: aggregated val loss {loss} at round {server_round}"
