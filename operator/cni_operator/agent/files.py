"""Atomic installs: a container runtime reads the CNI conf and bin dirs at any moment, so it must never see a file
half written. Every install writes a hidden temporary file in the target's own directory, fsyncs it, verifies its
SHA-256, renames it over the target (atomic on one filesystem) and fsyncs the directory so the rename survives a
power cut. A crash at any point leaves either the old file or the new one, plus at most a hidden temporary file
that no runtime loads (its name ends in .tmp, not .conf/.conflist/.json) and that the next install removes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

TMP_PREFIX = ".cni-operator-"
TMP_SUFFIX = ".tmp"
# Fault injection for the crash test: SIGKILL this process after the temporary file is written and synced, before
# the rename, as an OOM kill or a node crash would.
FAULT_ENV = "CNI_OPERATOR_AGENT_FAULT"
FAULT_KILL_BEFORE_RENAME = "kill-before-rename"


class ChecksumMismatch(OSError):
    """What landed on disk is not what was meant to be written (a full disk, a bad copy): nothing was replaced."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_path(target: Path) -> Path:
    return target.with_name(f"{TMP_PREFIX}{target.name}.{os.getpid()}{TMP_SUFFIX}")


def atomic_write(target: Path, data: bytes, mode: int = 0o644) -> str:
    """Replace `target` with `data` atomically; returns the SHA-256 verified on disk before the rename."""
    expected = sha256_bytes(data)
    tmp = _tmp_path(target)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(mode)  # O_CREAT's mode is filtered by the umask
        actual = sha256_file(tmp)
        if actual != expected:
            raise ChecksumMismatch(f"{tmp}: wrote sha256 {expected[:12]} but read back {actual[:12]}")
        if os.environ.get(FAULT_ENV) == FAULT_KILL_BEFORE_RENAME:
            os.kill(os.getpid(), signal.SIGKILL)
        tmp.replace(target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(target.parent)
    return expected


def remove_stale_tmp(directory: Path) -> list[str]:
    """Remove temporary files that a crashed install left (ours only: hidden, our prefix and suffix)."""
    removed = []
    for path in directory.glob(f"{TMP_PREFIX}*{TMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path.name)
    return sorted(removed)


@dataclass(frozen=True)
class InstalledBinary:
    name: str
    sha256: str
    changed: bool


def install_binaries(
    source: Path, target: Path, names: list[str] | None = None, manifest: str | None = None
) -> list[InstalledBinary]:
    """Copy plugin binaries from `source` to `target` atomically, skipping those already identical.

    The copy is verified against the source's SHA-256 before it replaces anything, so a runtime never executes a
    truncated plugin. `names` None means every executable file in `source`. `manifest` names a hidden JSON file in
    `target` that records {binary: sha256}, so the agent can later tell a binary replaced behind its back."""
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such directory of CNI plugin binaries")
    wanted = names if names is not None else sorted(p.name for p in source.iterdir() if _executable(p))
    missing = [name for name in wanted if not _executable(source / name)]
    if missing:
        raise FileNotFoundError(f"{source}: missing plugin binaries: {', '.join(missing)}")
    target.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(target)
    installed = []
    for name in wanted:
        data = (source / name).read_bytes()
        digest = sha256_bytes(data)
        current = target / name
        if current.is_file() and sha256_file(current) == digest:
            installed.append(InstalledBinary(name, digest, changed=False))
            continue
        atomic_write(current, data, mode=0o755)
        installed.append(InstalledBinary(name, digest, changed=True))
    if manifest is not None:
        record: dict[str, str] = {}
        with contextlib.suppress(OSError, ValueError):
            record = dict(json.loads((target / manifest).read_text()))
        record.update({b.name: b.sha256 for b in installed})
        atomic_write(target / manifest, json.dumps(record, indent=2, sort_keys=True).encode())
    return installed


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)
