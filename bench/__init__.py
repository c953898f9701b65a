"""Benchmarks, run with `make bench`; results land in the untracked bench/out/ (`make bench RECORD=1`: the committed bench/RESULTS.md and bench/results.json)."""
