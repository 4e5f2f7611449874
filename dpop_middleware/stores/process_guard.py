"""Is this process one of several workers of one server? The question a per-process store must ask.

A replay store that lives in one process's memory is exact for that process only: under
``gunicorn -w 4`` or ``uvicorn --workers 4`` each worker has its own, and a proof replayed against
another worker is accepted again. No server tells its application how many siblings it has (WSGI's
``wsgi.multiprocess`` is the closest, and ASGI has nothing), so the workers tell each other.

Each process that uses a guarded store registers itself once, as a file named by its pid in a
directory shared by its *group*: processes with the same parent, user, working directory and command
line (the workers a server forks or spawns share all four; two different servers started by one
parent do not). Registering means creating one's own file, then listing the others: of any two
workers, the one that lists last sees the other, so at most one process ever believes it is alone,
and a process that believes it is alone has an exact store. It looks again at most once a second,
so it stops serving soon after a sibling appears. Files of processes that died are removed.

Only POSIX systems are guarded; elsewhere the guard never refuses (documented in the operations
guide). Each pytest-xdist worker is an independent test process, not a server worker, so the guard
steps aside there too.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import stat
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..core.errors import ReplayStoreUnavailable

__all__ = ["LoggedRefusal", "PerProcessRefusal", "ProcessGuard", "shared_guard"]

logger = logging.getLogger("dpop_middleware")

_RECHECK_SECONDS = 1.0


def _group_key() -> str:
    """What the workers of one server have in common, as a short digest."""
    try:
        cwd = os.getcwd()
    except OSError:  # the directory was removed: still the same for every sibling
        cwd = ""
    identity = "\x00".join([str(os.getuid()), str(os.getppid()), cwd, *sys.argv])
    return hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:24]


def _parent_of(pid: int) -> int | None:
    """The parent pid of ``pid`` from /proc where there is one (so a reused pid is not a sibling)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None


def _alive_sibling(pid: int, parent: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else: not one of our workers
        return False
    actual_parent = _parent_of(pid)
    return actual_parent is None or actual_parent == parent


class ProcessGuard:
    """Answers :meth:`has_siblings` cheaply on every request; the work is done once a second at most.

    ``registry`` is the directory under which groups register (default: a per-user directory in
    the system temporary directory); tests pass their own.
    """

    def __init__(self, *, registry: Path | None = None, recheck_seconds: float = _RECHECK_SECONDS) -> None:
        self._registry = registry
        self._recheck = recheck_seconds
        self._lock = threading.Lock()
        self._reset()

    def after_fork(self) -> None:
        """Forget what the parent found: a forked worker registers and asks for itself."""
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._next_check = 0.0
        self._siblings = False
        self._own_file: Path | None = None
        self.problem: str | None = None  # why the guard refuses, for the store's log line

    @property
    def active(self) -> bool:
        """Whether this platform and process can be guarded at all."""
        return os.name == "posix" and "PYTEST_XDIST_WORKER" not in os.environ

    def has_siblings(self) -> bool:
        """True when other live processes of this server's group use a guarded store too."""
        if time.monotonic() < self._next_check:
            return self._siblings
        with self._lock:
            if time.monotonic() >= self._next_check:
                self._siblings = self._look()
                self._next_check = time.monotonic() + self._recheck
        return self._siblings

    def _look(self) -> bool:
        if not self.active:
            return False
        try:
            group = self._group_directory()
            if self._own_file is None or not self._own_file.exists():
                own = group / str(os.getpid())
                own.touch(mode=0o600)
                self._own_file = own
                atexit.register(self._unregister, own)
            return self._live_siblings(group)
        except (OSError, ValueError) as exc:
            # Without the registry we cannot know we are alone: a per-process store must not serve.
            self.problem = f"cannot check for sibling worker processes ({type(exc).__name__}: {exc})"
            return True

    def _group_directory(self) -> Path:
        base = self._registry or Path(tempfile.gettempdir()) / f"dpop-middleware-{os.getuid()}"
        base.mkdir(mode=0o700, exist_ok=True)
        info = base.lstat()
        # Another user's directory could hide our siblings from us (by deleting their files).
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
            raise ValueError(f"{base} must be a directory of this user, writable by it alone")
        group = base / _group_key()
        group.mkdir(mode=0o700, exist_ok=True)
        return group

    def _live_siblings(self, group: Path) -> bool:
        me, parent = os.getpid(), os.getppid()
        found = False
        for entry in group.iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            if _alive_sibling(int(entry.name), parent):
                found = True
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()
        self.problem = "several worker processes share this server" if found else None
        return found

    @staticmethod
    def _unregister(own: Path) -> None:
        if own.name == str(os.getpid()):  # a forked child must not remove its parent's file
            with contextlib.suppress(OSError):
                own.unlink()


_SHARED: ProcessGuard | None = None
_SHARED_LOCK = threading.Lock()


def shared_guard() -> ProcessGuard:
    """The process's one guard, used by every per-process store (the question is the process's)."""
    global _SHARED  # noqa: PLW0603 - one per process by design
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = ProcessGuard()
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=_SHARED.after_fork)
        return _SHARED


class LoggedRefusal:
    """A store's 503 for ``reason``, explained at ERROR the first time only (not once per request)."""

    def __init__(self, reason: str, description: str) -> None:
        self.reason = reason
        self.description = description
        self.reported = False

    def __call__(self, message: str, *args: object) -> ReplayStoreUnavailable:
        if not self.reported:
            self.reported = True
            logger.error(message, *args, extra={"dpop_reason": self.reason})
        return ReplayStoreUnavailable(self.reason, self.description)


class PerProcessRefusal:
    """The 503 a per-process ``store`` answers under several workers, explained at ERROR once per store.

    ``store`` names it in the log ("the in-memory replay store"); ``fix`` says what to configure.
    """

    def __init__(self, store: str, fix: str) -> None:
        self.store = store
        self.fix = fix
        self._refusal = LoggedRefusal("replay_store_per_process", "Replay store not shared by the server's workers")

    def __call__(self, problem: str | None) -> ReplayStoreUnavailable:
        return self._refusal(
            "dpop: %s is per process, and %s; it refuses every request (503) because a proof replayed against "
            "another worker would be accepted again. %s",
            self.store,
            problem or "several worker processes share this server",
            self.fix,
        )
