"""Writing files so that a reader never sees half of one and a failed write leaves nothing behind."""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Callable, Iterator, Optional


def temp_prefix(path: str) -> str:
    """How the temporary files `atomic_write` makes beside `path` begin (they end in ".tmp")."""
    return f".{os.path.basename(path)}."


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", before_replace: Optional[Callable[[], None]] = None,
                 **open_kwargs) -> Iterator[IO]:
    """Open a temporary file beside `path`; on success fsync it and rename it over `path`.

    On any error (a full disk included) the temporary file is deleted and the error
    re-raised, so the old `path`, if any, is left as it was. `before_replace` runs once the
    new contents are safely on disk, just before the rename (checkpoints rotate the old
    file to a backup there).
    """
    if "w" not in mode:
        raise ValueError(f"atomic_write opens files for writing, got mode {mode!r}")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=folder)
    # mkstemp makes the file private (0600); the result should have the permissions open() would give.
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_folder(folder)


def fsync_folder(folder: str) -> None:
    """Make a rename in `folder` durable (a crash right after it cannot bring the old file back)."""
    with contextlib.suppress(OSError):  # some file systems cannot open or sync a folder: the rename stands anyway
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
