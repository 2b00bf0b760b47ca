"""`florist-grpc agent`: runs on a data holder's machine, dials out to the control plane and runs FL clients.

It opens no listening port (only its own loopback Redis, for its clients' reports). Modules: `session` (the
Connect stream, reconnects with backoff), `clients` (this site's FL client processes and its data root),
`reports` (its clients' reports, relayed as snapshots), `devices` (what hello says this machine has).
"""

from florist_grpc.agent.session import Agent

__all__ = ["Agent"]
