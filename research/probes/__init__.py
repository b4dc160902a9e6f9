"""One-off research probes, each a script: `.venv/bin/python research/probes/NAME.py --help` (research/README.md)."""
