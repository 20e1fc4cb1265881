"""Output folders, checked before any work is done: the right kind of thing, and writable."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .errors import HPOError


def writable_dir(path: Path, *, what: str = "--save-dir") -> Path:
    """Create ``path`` if needed and prove a file can be written in it; HPOError otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise HPOError(f"{what} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        # A real write, not os.access: read-only mounts and ACLs answer only to trying.
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise HPOError(f"{what} {path} cannot be written ({error.strerror or error})") from None
    return path
