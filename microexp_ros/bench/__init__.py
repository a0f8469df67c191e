"""Benchmarks: each prints a table (or one JSON object) with a baseline measured in the same run."""
