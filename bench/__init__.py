"""Benchmarks kept out of the shipped packages (run from a source checkout)."""
