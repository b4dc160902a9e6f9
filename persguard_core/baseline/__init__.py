"""Data-level baselines the protection is compared against (METHOD.md, "Measuring it")."""

from persguard_core.baseline.aspl import ASPLConfig, aspl

__all__ = ["ASPLConfig", "aspl"]
