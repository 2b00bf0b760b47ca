"""Test support shipped in the package: simulated jobs and an in-process control plane (tests, benchmarks)."""
