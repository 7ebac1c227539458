"""Benchmarks behind `longread bench`: they measure and return figures, and print nothing."""
