"""Atomic, verifiable training checkpoints (safetensors + JSON).

Layout of a run folder's checkpoints::

    RUN/checkpoints/
        LATEST                  one line: the name of the newest complete checkpoint
        ckpt-00000100/
            model.safetensors       the model's weights
            ema.safetensors         the EMA weights (if any)
            optimizer.safetensors   the optimizer's tensor state (``state.<param>.<key>``)
            extra.safetensors       any other tensors (RNG states, adaptive sampler buffers)
            state.json              trainer state: step, optimizer param groups, RNG states,
                                    data-iterator state, anything JSON-able the trainer adds
            manifest.json           size and SHA-256 of every file above (written last)

A checkpoint is written into a temporary sibling folder, every file is flushed and ``fsync``-ed, the
folder is renamed into place with ``os.replace`` and only then is ``LATEST`` replaced (itself written
to a temporary file, fsync-ed and ``os.replace``-d). A process killed at any point therefore leaves
``LATEST`` naming the previous complete checkpoint; stale temporary folders are removed by the next
save. Loading verifies the manifest (sizes and hashes); any mismatch, missing file or unreadable
safetensors raises one ``CheckpointError`` (a ``ValueError``) naming the folder and the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

__all__ = [
    "CheckpointError",
    "LoadedCheckpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "optimizer_state_from_flat",
    "optimizer_state_to_flat",
    "save_checkpoint",
    "write_json_atomic",
]

_NAME = re.compile(r"^ckpt-(\d{8,})$")
_TENSOR_FILES = ("model", "ema", "optimizer", "extra")


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or corrupt."""


@dataclass
class LoadedCheckpoint:
    """What ``load_checkpoint`` returns: the folder, its step and the tensors/state it holds."""

    path: Path
    step: int
    model: dict[str, Tensor]
    ema: dict[str, Tensor] | None
    optimizer: dict[str, Tensor]
    extra: dict[str, Tensor]
    state: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# small atomic-write helpers
# ------------------------------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _write_bytes_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (temp file + fsync + ``os.replace``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    _write_bytes_synced(tmp, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------
# optimizer state <-> flat tensors + json
# ------------------------------------------------------------------------------------------------
def optimizer_state_to_flat(sd: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``state.<param>.<key>``) and a JSON part."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for key, val in st.items():
            name = f"state.{pid}.{key}"
            if isinstance(val, Tensor):
                tensors[name] = val.detach().cpu().contiguous()
            else:
                scalars[name] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_state_from_flat(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of ``optimizer_state_to_flat``."""
    state: dict[int, dict[str, Any]] = {}
    for name, val in [*tensors.items(), *meta.get("scalars", {}).items()]:
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = val
    return {"state": state, "param_groups": meta["param_groups"]}


# ------------------------------------------------------------------------------------------------
# save / list / load
# ------------------------------------------------------------------------------------------------
def _contiguous_cpu(d: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in d.items()}


def _write_folder(tmp: Path, groups: dict[str, dict[str, Tensor] | None], step: int, state) -> None:
    """The checkpoint's files in the temporary folder ``tmp``, each fsynced, the manifest last."""
    from safetensors.torch import save_file

    tmp.mkdir()
    files: dict[str, dict[str, Any]] = {}
    for key, tensors in groups.items():
        if tensors is None:
            continue
        path = tmp / f"{key}.safetensors"
        save_file(_contiguous_cpu(tensors), str(path), metadata={"step": str(step)})
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
    full_state = {"step": step, **(state or {})}
    _write_bytes_synced(tmp / "state.json", json.dumps(full_state, indent=1, sort_keys=True).encode())
    for p in sorted(tmp.iterdir()):
        files[p.name] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
    _write_bytes_synced(tmp / "manifest.json", json.dumps({"step": step, "files": files}, indent=1).encode())
    _fsync_dir(tmp)


def save_checkpoint(
    root: str | os.PathLike,
    step: int,
    *,
    model: dict[str, Tensor],
    ema: dict[str, Tensor] | None = None,
    optimizer: dict[str, Tensor] | None = None,
    extra: dict[str, Tensor] | None = None,
    state: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write a checkpoint for ``step`` under ``root`` atomically and return its folder.

    ``model``/``ema``/``optimizer``/``extra`` are flat name → tensor dicts (safetensors); ``state`` is
    anything JSON-able. ``keep`` complete checkpoints are kept (older ones are deleted after the new
    one is in place). A write that fails (disk full) removes its half-written folder and raises
    ``OSError`` naming the last good checkpoint, which is left as it was.
    """
    if not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a non-negative integer; got {step!r}")
    if not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep must be a positive integer; got {keep!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    name = f"ckpt-{step:08d}"
    tmp = root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    groups = {"model": model, "ema": ema, "optimizer": optimizer or {}, "extra": extra or {}}
    try:
        _write_folder(tmp, groups, step, state)
    except OSError as e:  # disk full, quota, I/O error: the half-written folder goes, the last one stays
        shutil.rmtree(tmp, ignore_errors=True)
        kept = list_checkpoints(root)
        raise OSError(
            e.errno,
            f"cannot write checkpoint {root / name} ({e.strerror or e}); the last good checkpoint "
            f"{kept[-1] if kept else 'none'} is kept",
        ) from None
    final = root / name
    if final.exists():  # re-saving the same step (e.g. Ctrl-C right after a periodic save)
        old = root / f".tmp-old-{name}-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(root)
    latest_tmp = root / f".LATEST.{uuid.uuid4().hex[:8]}.tmp"
    _write_bytes_synced(latest_tmp, (name + "\n").encode())
    os.replace(latest_tmp, root / "LATEST")
    _fsync_dir(root)
    for old_ckpt in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old_ckpt, ignore_errors=True)
    return final


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Checkpoint folders under ``root`` that have a manifest, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [
        p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name) and (p / "manifest.json").exists()
    ]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The folder ``LATEST`` names under ``root`` (``None`` when there is no checkpoint yet).

    Raises ``CheckpointError`` when ``LATEST`` names a folder that does not exist.
    """
    root = Path(root)
    pointer = root / "LATEST"
    if not pointer.exists():
        ckpts = list_checkpoints(root)
        return ckpts[-1] if ckpts else None
    name = pointer.read_text().strip()
    if not _NAME.match(name) or not (root / name).is_dir():
        raise CheckpointError(
            f"corrupt checkpoint pointer {pointer}: names {name!r}, which is not a checkpoint folder"
        )
    return root / name


def _verify(path: Path) -> dict[str, Any]:
    manifest_path = path / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except FileNotFoundError:
        msg = f"corrupt checkpoint {path}: manifest.json is missing (incomplete write?)"
        raise CheckpointError(msg) from None
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"corrupt checkpoint {path}: unreadable manifest.json ({e})") from None
    if not (isinstance(files, dict) and all(
        isinstance(k, str) and "/" not in k and isinstance(v, dict) and isinstance(v.get("bytes"), int)
        and isinstance(v.get("sha256"), str) for k, v in files.items()
    )):  # fmt: skip
        raise CheckpointError(
            f"corrupt checkpoint {path}: manifest.json has the wrong shape (files: name → bytes, sha256)"
        )
    for fname, info in files.items():
        p = path / fname
        if not p.exists():
            raise CheckpointError(f"corrupt checkpoint {path}: {fname} is missing")
        if p.stat().st_size != info["bytes"] or _sha256(p) != info["sha256"]:
            raise CheckpointError(f"corrupt checkpoint {path}: {fname} does not match its manifest checksum")
    return files


def load_checkpoint(path: str | os.PathLike, *, verify: bool = True) -> LoadedCheckpoint:
    """Load a checkpoint folder, or the newest one when ``path`` is a ``checkpoints`` root or a run folder.

    Raises ``CheckpointError`` (a ``ValueError``, one line) for a missing, incomplete or corrupt one.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}: the path does not exist")
    if not (path / "manifest.json").exists() and not _NAME.match(path.name):
        root = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        found = latest_checkpoint(root)
        if found is None:
            raise CheckpointError(f"no checkpoint under {path}")
        path = found
    files = _verify(path) if verify else {p.name: {} for p in path.iterdir()}
    loaded: dict[str, dict[str, Tensor] | None] = {}
    for key in _TENSOR_FILES:
        fname = f"{key}.safetensors"
        if fname not in files:
            loaded[key] = None
            continue
        try:
            loaded[key] = load_file(str(path / fname))
        except (SafetensorError, OSError, RuntimeError) as e:
            raise CheckpointError(f"corrupt checkpoint {path}: cannot read {fname} ({e})") from None
    if loaded["model"] is None:
        raise CheckpointError(f"corrupt checkpoint {path}: model.safetensors is missing")
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"corrupt checkpoint {path}: unreadable state.json ({e})") from None
    if not isinstance(state, dict) or isinstance(state.get("step", 0), bool) or not isinstance(
        state.get("step", 0), int
    ):
        raise CheckpointError(f"corrupt checkpoint {path}: state.json has the wrong shape")
    return LoadedCheckpoint(
        path=path,
        step=int(state.get("step", 0)),
        model=loaded["model"],
        ema=loaded["ema"],
        optimizer=loaded["optimizer"] or {},
        extra=loaded["extra"] or {},
        state=state,
    )
