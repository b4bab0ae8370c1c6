"""Benchmarks for chatd: the codec's throughput, baseline servers and a load generator.

Run `python -m benchmarks.codec` and `python -m benchmarks.load`; results
are written under benchmarks/results/ (not committed) with `--json FILE`.
"""
