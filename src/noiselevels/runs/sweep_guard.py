"""What keeps a sweep folder consistent (``noiselevels.runs.sweep``): one sweep at a time, workers that
die with their sweep, interrupts told apart from failures, and every run's arguments checked first.

* :class:`SweepLock`: an exclusive ``flock`` on ``OUT/.sweep.lock``, which holds the holder's PID. A
  second sweep into the same folder refuses at once, naming that PID. The kernel drops the lock when
  its holder dies (even by SIGKILL), so a stale lock never blocks: the next sweep simply takes it.
* :func:`die_with_parent`: called first thing in a worker process. On Linux the kernel sends the
  worker SIGKILL when the sweep that started it dies (``prctl(PR_SET_PDEATHSIG)``); everywhere a
  daemon thread also watches the parent PID and exits when it changes (re-parenting).
* :func:`check_run_params` / :func:`check_eval_params`: each configuration's fine-tune arguments and
  the ``[eval]`` table, type and range, before any run starts (a bad grid point used to fail only
  after the first runs had finished).
* :func:`signal_name`: a worker that ended by a signal was interrupted (by the user or the system),
  not failed: it is left for the next invocation and reported as such.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

try:  # POSIX; without it (Windows) no lock is taken
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = [
    "PARENT_ENV",
    "SweepLock",
    "SweepLockedError",
    "check_eval_params",
    "check_run_params",
    "die_with_parent",
    "interrupt_on_sigterm",
    "require_ray",
    "signal_name",
]

PARENT_ENV = "NOISELEVELS_SWEEP_PARENT"  # the PID a worker must outlive no longer than 0.5 s
LOCK_NAME = ".sweep.lock"


class SweepLockedError(ValueError):
    """Another live sweep holds the folder's lock (the message names its PID)."""


class SweepLock:
    """``with SweepLock(out):`` — an exclusive, non-blocking lock on ``out/.sweep.lock`` (module
    docstring). Without ``fcntl`` (Windows) no lock is taken."""

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        self.path = self.out / LOCK_NAME
        self._file = None

    def __enter__(self) -> SweepLock:
        if fcntl is None:  # pragma: no cover - Windows
            return self
        self.out.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise SweepLockedError(
                f"another sweep (PID {holder}) is running into {self.out}; wait for it to finish or stop it"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        return self

    def __exit__(self, *exc) -> bool:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self._file.close()  # closing releases the flock
            self._file = None
        return False


def die_with_parent(parent: int | None = None) -> None:
    """Make this (worker) process end when ``parent`` (default: ``$NOISELEVELS_SWEEP_PARENT``, else
    the current parent) is gone: PR_SET_PDEATHSIG on Linux, plus a watcher thread everywhere."""
    if parent is None:
        env = os.environ.get(PARENT_ENV, "")
        parent = int(env) if env.isdigit() else os.getppid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the prctl
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


@contextlib.contextmanager
def interrupt_on_sigterm():
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` in the main thread (like Ctrl-C), so a
    terminated sweep stops its workers and reports the interruption."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def signal_name(returncode: int) -> str | None:
    """``SIGTERM`` for a worker's return code −15 (ended by a signal), else None."""
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


# ----------------------------------------------------------------------------------------------
# the arguments of every run, checked before any starts
# ----------------------------------------------------------------------------------------------
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(where: str, key: str, v: Any, lo: int) -> None:
    if not _is_int(v) or v < lo:
        raise ValueError(f"{where} {key} must be an integer >= {lo}; got {v!r}")


_INTS = {"rank": 1, "steps": 1, "batch_size": 1, "warmup": 0, "prior_images": 1, "label": 0}


def check_run_params(name: str, params: Mapping[str, Any]) -> None:
    """The fine-tune arguments of configuration ``name`` (``noiselevels.runs.finetune.finetune``'s),
    checked for type and range; ``ValueError`` naming the configuration and the key."""
    where = f"configuration {name!r}:"
    for key, lo in _INTS.items():
        if key in params and not (key == "label" and params[key] is None):
            _int(where, key, params[key], lo)
    if "lr" in params and not (_is_num(params["lr"]) and 0 < params["lr"] <= 1):
        raise ValueError(f"{where} lr must be a number in (0, 1]; got {params['lr']!r}")
    if params.get("alpha") is not None and not (_is_num(params["alpha"]) and params["alpha"] > 0):
        raise ValueError(f"{where} alpha must be a finite number > 0; got {params['alpha']!r}")
    if "prior_weight" in params and not (_is_num(params["prior_weight"]) and params["prior_weight"] >= 0):
        raise ValueError(f"{where} prior_weight must be a finite number >= 0; got {params['prior_weight']!r}")
    for key in ("noise", "adaptive"):
        if params.get(key) is not None and not isinstance(params[key], Mapping):
            raise ValueError(f"{where} {key} must be a table; got {params[key]!r}")
    for key in ("timestep_type", "target"):
        if params.get(key) is not None and not (isinstance(params[key], str) and params[key].strip()):
            raise ValueError(f"{where} {key} must be a non-empty string; got {params[key]!r}")


FEATURES = ("mnist", "pixels")


def check_eval_params(ev: Mapping[str, Any]) -> None:
    """The ``[eval]`` table (``evaluate_finetune``'s arguments): type and range."""
    for key, lo in (("num_new", 1), ("num_other", 0), ("steps", 1), ("seed", 0)):
        if key in ev:
            _int("[eval]", key, ev[key], lo)
    f = ev.get("features", "mnist")
    if f not in FEATURES and not (isinstance(f, str) and f.strip() and Path(f).is_dir()):
        raise ValueError(
            f"[eval] features must be {' or '.join(FEATURES)} or a CLIP/DINO model folder; got {f!r}"
        )


def require_ray() -> None:
    """``--backend ray`` needs Ray Tune: checked before anything is written into the sweep folder."""
    try:
        import ray  # noqa: F401
        from ray import tune  # noqa: F401
    except ImportError:
        raise ValueError("--backend ray needs Ray Tune: pip install 'noiselevels[ray]'") from None
