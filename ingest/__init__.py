"""Turning files into documents: readers, normalization, chunking and the SQLite library.

This package imports no other longread package; everything above it builds on its types.
"""
