"""Writing a download to disk only if its sha256 is the expected one: the bytes go to a temporary file beside the
destination, hashed as they arrive, and are renamed into place on a match; on a mismatch or any error the
temporary file is removed and nothing is left behind."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from persguard_client.errors import ChecksumMismatch


def write_verified(
    chunks: Iterable[bytes], dest: Path, expected_sha256: str, on_bytes: Callable[[int], None] | None = None
) -> Path:
    """Stream `chunks` to `dest` atomically if their sha256 is `expected_sha256` (ChecksumMismatch otherwise)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                digest.update(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != expected_sha256.lower():
            raise ChecksumMismatch(expected_sha256, actual)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest
