"""The pluggable job functions of the settings (`PROTECT_FN`, `VERIFY_FN`: `module:function`), for the workers and
the embedded runner alike."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from common.settings import Settings

log = logging.getLogger(__name__)


def load_callable(path: str) -> Callable[..., Any]:
    """`module:function` -> the function."""
    module, _, name = path.partition(":")
    if not module or not name:
        raise ValueError(f"expected module:function, got {path!r}")
    return getattr(importlib.import_module(module), name)


def configured_job_functions(settings: Settings) -> dict[str, Callable[..., Any]]:
    """`protect_fn` / `verify_fn` keyword arguments for the functions the settings replace (none by default)."""
    functions = {
        name: load_callable(path)
        for name, path in (("protect_fn", settings.protect_fn), ("verify_fn", settings.verify_fn))
        if path
    }
    if functions:
        log.warning("using %s", ", ".join(f"{name}={getattr(settings, name)}" for name in functions))
    return functions
