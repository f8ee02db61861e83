"""The benchmarks of tools/benchmark.py, one module each, beside what they share (common.py)."""
