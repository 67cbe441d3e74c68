"""A run directory (`alexnet-raw train --out DIR`): checked for writability before any work, held
by one writer at a time.

The lock is an exclusive fcntl.flock on DIR/train.lock, which holds the holder's pid (for the
message a second writer gets). The kernel drops a flock when the process holding it ends, however
it ends, so the file a killed run leaves behind never blocks the next one; it is not removed on
release (removing it would let two writers hold locks on two different files).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: run directories are not locked
    fcntl = None

LOCK_NAME = "train.lock"


class RunDirError(Exception):
    """The run directory cannot be used: a bad path (exit status 2) or another writer holds it."""


def _nearest_existing(path):
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def check_writable(path, flag="--out"):
    """Raise RunDirError unless `path` is a writable directory, or one that can be created (every
    existing part of it a directory, the deepest existing one writable). Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{flag} {path}: expected a directory (or a path to create one at), got an existing file")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise RunDirError(f"{flag} {path}: expected a directory path, but {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "the directory" if existing == path else f"{existing}, where it would be created,"
        raise RunDirError(f"{flag} {path}: expected a writable directory, but {what} is not writable")


def check_output_file(path, flag):
    """Raise RunDirError unless a file can be written at `path` (its directory exists and is
    writable, and `path` is not a directory). Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise RunDirError(f"{flag} {path}: expected a file name, got a directory")
    parent = path.parent
    if not parent.is_dir():
        raise RunDirError(f"{flag} {path}: expected a file in an existing directory, but {parent} "
                          f"{'is a file' if parent.exists() else 'does not exist'}")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise RunDirError(f"{flag} {path}: expected a writable file, but {parent if not path.exists() else path} "
                          "is not writable")


class RunLock:
    """Exclusive hold on a run directory for this process (see the module's docstring)."""

    def __init__(self, directory):
        self.path = Path(directory) / LOCK_NAME
        self._file = None

    @property
    def held(self):
        return self._file is not None

    def acquire(self):
        """Take the lock (the directory must exist); RunDirError naming the holder's pid if another
        process has it. Taking a lock already held is a no-op."""
        if self.held or fcntl is None:
            return
        try:
            f = open(self.path, "a+", encoding="utf-8")
        except OSError as e:
            raise RunDirError(f"--out {self.path.parent}: expected a writable directory, but cannot create "
                              f"{self.path}: {e.strerror or e}") from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise RunDirError(f"--out {self.path.parent} is in use by another alexnet-raw train (pid {holder}, "
                              f"lock {self.path}): wait for it to end or choose another --out") from None
        except BaseException:
            f.close()
            raise
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f

    def release(self):
        if not self.held:
            return
        f, self._file = self._file, None
        with contextlib.suppress(OSError):
            f.truncate(0)  # still held here: nobody reads a pid that no longer holds it
        f.close()  # closing drops the flock
