"""The research harness: experiment presets, their runner and result tables, and one-off probes.

Nothing here ships with the service; `persguard_core` never imports from this package. See research/README.md.
"""
