"""Files in the data directory, which holds password hashes, addresses and keys: the
directory is made readable by its owner only (0700), and so is every file made in it (0600)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def private_dir(path: Path) -> Path:
    """``path``, made if missing with its parents, 0700 when made here (a directory that exists
    is left as its owner set it)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def private_file(path: Path) -> Path:
    """``path``, made empty and 0600 if missing (one that exists is left as it is)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    return path


def write_private(path: Path, content: bytes) -> Path:
    """``content`` written to ``path`` (replacing what it held), readable by its owner only."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file that was there keeps its mode otherwise
    with os.fdopen(fd, "wb") as file:
        file.write(content)
    return path


def write_once(path: Path, make: Callable[[], bytes]) -> tuple[bytes, bool]:
    """The content of ``path``; if it does not exist, ``make()`` written there first, 0600.
    Returns the content and whether it was written now. Of two processes starting together,
    one writes and the other reads what it wrote: the content goes to a file of this
    process's own, which is then linked to ``path`` (refused if ``path`` exists), so ``path``
    is never seen half-written."""
    if path.exists():
        return path.read_bytes(), False
    private_dir(path.parent)
    content = make()
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600
    draft = Path(name)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
        try:
            os.link(draft, path)
        except FileExistsError:
            return path.read_bytes(), False
    finally:
        draft.unlink()
    return content, True
