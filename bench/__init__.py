"""Benchmarks, run by hand from the repo root as `.venv/bin/python -m bench.<name>`; their figures
and how to read them are in bench/README.md. Not collected by pytest."""
