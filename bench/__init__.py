"""Benchmarks (run from the repository root: ``python -m bench.X``). Never timed tests."""
