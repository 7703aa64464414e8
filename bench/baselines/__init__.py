"""Servers the benchmark harness compares ours with, built the way their users would."""
