"""Benchmarks, run with `make bench`; results land in bench/RESULTS.md and bench/results.json."""
