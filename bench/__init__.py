"""Benchmarks of florist-grpc (run with `make bench`, not part of the tests). See docs/benchmarks.md."""
