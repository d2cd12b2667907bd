"""Generators of the built-in model libraries: real measurements, written as library bundles.

Each generator is deterministic for a seed and resumable, so a library can be rebuilt and checked in.
"""
