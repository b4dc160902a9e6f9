"""Base models kept loaded between the jobs of one process (a GPU worker's pool process, the embedded runner).

Loading a base model (reading its weights, building the pipeline, hashing its files for the manifest) is work
every job on that model used to repeat. `BaseModelCache.use(model, device)` hands out a loaded
`persguard_core.model_io.LoadedModel`, loading it on a miss. The core only reads what it is given: it trains
copies of the trainable modules (`persguard_core.implant.parts.DiffusionParts.from_base`), so the cached model
is the same before and after a job.

Identity: the model's resolved path, the device, and the size and modification time of each of its files, so a
folder rewritten in place (a retrained built-in model) is loaded afresh; the sha256 is computed once per load.
An entry is lent to one job at a time: a second job that wants it while it is lent (only possible with several
runner threads in one process) loads a private copy. At most `capacity` entries (least recently used goes first).
torch and diffusers are imported on first use only: the api imports this module too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from common.settings import get_settings

if TYPE_CHECKING:
    from persguard_core.model_io import LoadedModel

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]
CacheKey = tuple[str, str, Fingerprint]
Loader = Callable[[Path, str], "LoadedModel"]


def _load(path: Path, device: str) -> LoadedModel:
    from persguard_core.model_io import load_model

    return load_model(path, device=device)


def _resolve(model: str) -> Path:
    from persguard_core.model_io import resolve

    return resolve(model).resolve()


def fingerprint(path: Path) -> Fingerprint:
    """(relative path, size, mtime in ns) of every file `model_sha256` hashes: changes when any file does."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and p.suffix != ".md")
    entries = []
    for file in files:
        stat = file.stat()
        name = file.relative_to(path).as_posix() if path.is_dir() else file.name
        entries.append((name, stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


@dataclass
class _Entry:
    model: LoadedModel
    in_use: bool = False


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    load_s: float  # seconds spent loading on misses


class BaseModelCache:
    """Loaded base models by identity (see the module docstring); thread-safe."""

    def __init__(self, capacity: int = 1, loader: Loader = _load) -> None:
        self.capacity = capacity
        self._loader = loader
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = self._misses = 0
        self._load_s = 0.0

    @contextmanager
    def use(self, model: str, device: str) -> Iterator[LoadedModel]:
        """The loaded base model `model` ("builtin" or a diffusers folder) on `device`, for one job.

        The caller must not modify it (the core does not); it is lent to nobody else until the block ends.
        """
        path = _resolve(model)
        key = (str(path), device, fingerprint(path))
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and not entry.in_use:
                self._entries.move_to_end(key)
                entry.in_use = True
                self._hits += 1
            else:
                self._misses += 1
                if entry is None:  # else it is lent out: this job loads a private copy, the cache stays as it is
                    self._make_room(key)
                entry = None
        if entry is None:
            entry = _Entry(self._timed_load(path, device), in_use=True)
            self._keep(key, entry)
        else:
            log.info("base model %s on %s: cached", path, device)
        try:
            yield entry.model
        finally:
            with self._lock:
                entry.in_use = False

    def _make_room(self, key: CacheKey) -> None:
        """Before a load (lock held): drop idle entries of the same path (another version of its files, another
        device) and the least recently used idle ones beyond `capacity - 1`, so that memory is freed first."""
        for other in [k for k, e in self._entries.items() if k[0] == key[0] and k != key and not e.in_use]:
            del self._entries[other]
        idle = [k for k, e in self._entries.items() if not e.in_use]
        while idle and len(self._entries) >= self.capacity:
            del self._entries[idle.pop(0)]

    def _timed_load(self, path: Path, device: str) -> LoadedModel:
        start = time.perf_counter()
        model = self._loader(path, device)
        elapsed = time.perf_counter() - start
        with self._lock:
            self._load_s += elapsed
        log.info("base model %s on %s: loaded in %.2fs", path, device, elapsed)
        return model

    def _keep(self, key: CacheKey, entry: _Entry) -> None:
        """Cache a freshly loaded entry if there is room (entries lent out are never evicted) and no equal one
        is cached (a private load because the cached one was lent out)."""
        with self._lock:
            if key not in self._entries and len(self._entries) < self.capacity:
                self._entries[key] = entry

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, self._load_s)

    def clear(self) -> None:
        """Forget every entry not lent out now."""
        with self._lock:
            for key in [k for k, e in self._entries.items() if not e.in_use]:
                del self._entries[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


@lru_cache(maxsize=1)
def process_cache() -> BaseModelCache:
    """This process's cache, `PERSGUARD_BASE_MODEL_CACHE_SIZE` entries (made on first use, after a fork)."""
    return BaseModelCache(capacity=get_settings().base_model_cache_size)
