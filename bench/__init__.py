"""Benchmarks: kitex-grpc against the plain library each transport is built on (see README.md)."""
