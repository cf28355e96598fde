"""Benchmark scripts: each prints figures from one run (see the README)."""
