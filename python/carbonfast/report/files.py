"""Writing report files safely: whole or not at all, owner-only, and never through a link.

A report can hold command lines, which can hold secrets: files are created 0600. A temporary
name an attacker could guess (or plant a symlink at) is never used: the temporary file is
created exclusively under a random name beside the target, then renamed over it. Whatever is
at the target that is not a regular file (a symlink, a device, a FIFO) is left alone, and the
write fails with a message saying so.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def check_target(path: str | os.PathLike[str]) -> None:
    """Raises ValueError unless `path` is absent or a regular file (links are not followed)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise ValueError(f"{path} is {what}; carbonfast writes only regular files")


def check_writable(path: str | os.PathLike[str], flag: str, *, append: bool = False) -> None:
    """Raises ValueError, naming `flag` and the path as given, unless a file can be written at
    `path`: a file is made (then removed) where it will go, as it will be, so that work done
    before the write is never lost to it."""
    target = Path(path)
    parent = target.parent
    if target.is_dir() and not target.is_symlink():
        raise ValueError(f"{flag} {path}: is a directory; name a file in it")
    try:
        check_target(target)
    except ValueError as e:
        raise ValueError(f"{flag} {e}") from None
    if not parent.is_dir():
        raise ValueError(f"{flag} {path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: the directory {parent} is not writable")
    try:
        probe(target, append=append)
    except (OSError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ValueError(f"{flag} {path}: cannot be written there ({why})") from None


def write_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Replaces `path` with `text`: a crash mid-write leaves the previous file, never half of
    the new one."""
    path = Path(path)
    check_target(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def open_for_append(path: str | os.PathLike[str]) -> int:
    """A descriptor appending to `path` (created 0600), refusing links and special files."""
    check_target(path)
    return os.open(
        path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
    )


def probe(path: str | os.PathLike[str], *, append: bool = False) -> None:
    """Makes sure `path` can be written as it will be, before anything runs: a file is created
    (exclusively, under a random name, where write_atomically puts its temporary one) and
    removed; `append` (the CSV): an existing file is opened for appending and left as it is,
    an absent one created and removed. Raises OSError or ValueError saying why not."""
    path = Path(path)
    check_target(path)
    if append:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
            os.close(fd)
            os.unlink(path)
        else:
            os.close(fd)
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)
