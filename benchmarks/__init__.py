"""Benchmarks that measure this project and rewrite ``benchmarks/results/*.md``: ``python -m benchmarks``."""
