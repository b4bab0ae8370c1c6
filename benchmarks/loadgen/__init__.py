"""The load benchmark's parts: target servers, wire dialects, the per-process
generator loop, delivery checks, latency histograms and the report.

`benchmarks/load.py` is the command line that puts them together.
"""
