"""Benchmarks (not tests): see overhead.py."""
