"""Benchmarks of the served model and their baselines."""
