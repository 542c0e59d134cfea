"""Data files of the region generator (package so that setuptools ships them)."""
