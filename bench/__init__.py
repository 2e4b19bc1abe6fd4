"""Benchmarks and long-run reliability checks for Omnivoice (see ``bench/README.md``).

Every script here runs on loopback against a real Redis, cleans up its keys and stops the servers it
started, and writes its numbers to ``bench/results/<name>.json``. ``python -m bench`` runs them all
with short defaults and prints a summary table.
"""
