"""The history's file on disk: WAL mode, telling a file that is plainly no SQLite database
(without blocking on a FIFO), and moving a damaged one aside so that a new history starts."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

# The first bytes of every SQLite database.
SQLITE_HEADER = b"SQLite format 3\x00"


def use_wal(db: sqlite3.Connection, wait_s: float = 30.0) -> None:
    """Puts the file in WAL mode. Switching needs the file to itself and, unlike other
    statements, answers "database is locked" at once rather than waiting while another
    connection opens it too: retried, for as long as the connection's own timeout."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


# Opens of a history that another process replaced meanwhile are tried again this many times.
OPEN_ATTEMPTS = 5


class NotAHistory(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def warn(message: str) -> None:
    import warnings

    warnings.warn(f"carbonfast: {message}", RuntimeWarning, stacklevel=3)


def is_corrupt(e: sqlite3.Error) -> bool:
    """Whether SQLite found the file damaged or not a database (rather than busy, locked or
    unwritable)."""
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
    return type(e) is sqlite3.DatabaseError


def sniff(path: Path) -> tuple[int | None, str | None]:
    """The file's inode, and what it is where that is plainly not an SQLite database (None:
    empty, or an SQLite database). Read without blocking: a FIFO planted there is no file.
    A database that looks cut short may be one another process is creating this instant: it
    is judged truncated only if it stays so for a while."""
    import time

    for _ in range(10):
        ino, what = _sniff_once(path)
        if what is None or not what.startswith("a truncated"):
            break
        time.sleep(0.05)
    return ino, what


def _sniff_once(path: Path) -> tuple[int | None, str | None]:
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path} is not a regular file; carbonfast writes only regular files")
        head = os.read(fd, 512)
        st = os.fstat(fd)  # after the read: its size covers what was read
    finally:
        os.close(fd)
    if not head:
        return st.st_ino, None
    if head.startswith(SQLITE_HEADER):
        if st.st_size < 100:
            return st.st_ino, f"a truncated SQLite database ({st.st_size} bytes)"
        return st.st_ino, None
    if SQLITE_HEADER.startswith(head):
        return st.st_ino, f"a truncated SQLite database ({st.st_size} bytes)"
    text: str | None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        text = head[: e.start].decode("utf-8") if e.start > len(head) - 4 else None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        return st.st_ino, f"a text file ({st.st_size} bytes)"
    return st.st_ino, f"not a database: {st.st_size} bytes of unrecognised data"


def move_aside(path: Path, inode: int | None) -> Path | None:
    """Moves the file at `path` (the one with `inode`) to `path.bak-<time>-<random>`, a name
    first created exclusively, so that nothing anyone else made there is replaced; its WAL
    goes with it. Returns the new name, or None where the file is not the one judged any more
    (another process moved it first and started a new history). Those that find one damaged
    file at once take turns under a lock beside it, so that it alone is moved, once."""
    import fcntl
    import secrets
    import time

    lock_path = path.with_name(f"{path.name}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + 10.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ValueError(
                        f"{lock_path} stayed locked for 10 s by another process repairing the "
                        "history; try again, or name another history (CARBONFAST_HISTORY)"
                    ) from None
                time.sleep(0.01)
        try:
            if os.lstat(path).st_ino != inode:
                return None
        except FileNotFoundError:
            return None
        stamp = time.strftime("%Y%m%dT%H%M%S")
        while True:
            backup = path.with_name(f"{path.name}.bak-{stamp}-{secrets.token_hex(4)}")
            try:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                os.close(os.open(backup, flags, 0o600))
                break
            except FileExistsError:
                continue
        os.rename(path, backup)  # replaces only the placeholder made above
        _move_wal(path, backup)
        return backup
    finally:
        os.close(fd)


def _move_wal(path: Path, backup: Path) -> None:
    wal = Path(f"{path}-wal")
    if wal.is_file() and not wal.is_symlink():
        with contextlib.suppress(OSError):
            os.close(os.open(f"{backup}-wal", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.rename(wal, f"{backup}-wal")
    with contextlib.suppress(OSError):
        os.unlink(f"{path}-shm")
