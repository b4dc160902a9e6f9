"""Celery workers: the `implant` and `verify` GPU tasks, and the reconciler that beat runs (docs/WORKER.md)."""
