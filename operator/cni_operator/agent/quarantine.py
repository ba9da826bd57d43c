"""The quarantine: configs of other plugins moved out of the conf dir, never deleted, so a rollback can restore them.

A runtime uses the lexically first config in the conf dir, so a leftover `00-multus.conf` or `10-calico.conflist`
would win over the target revision's config. The agent moves such files to `<state dir>/quarantine/`, one entry per
file and content: `<time>-<sha12>/` holding the file under its original name and `meta.json`. An entry appears by an
atomic directory rename after its content is synced, and only then is the original unlinked, so a crash in between
leaves the file in both places (the next pass finishes the move), never in neither.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Set
from dataclasses import dataclass
from pathlib import Path

from cni_operator.agent.conflist import config_files
from cni_operator.agent.files import atomic_write, fsync_dir, sha256_bytes


@dataclass(frozen=True)
class Entry:
    name: str  # the file's name in the conf dir
    sha256: str
    quarantined_at: float
    revision: str  # the revision the node was moving to when the file was quarantined
    directory: Path

    @property
    def path(self) -> Path:
        return self.directory / self.name


def files_to_quarantine(conf_files: list[str], keep: set[str]) -> list[str]:
    """Pure decision: every config the runtime would load, except the target's own and those it must keep."""
    return [name for name in conf_files if name not in keep]


class Quarantine:
    def __init__(self, root: Path) -> None:
        self.root = root

    def entries(self) -> list[Entry]:
        """Oldest first."""
        found = []
        if not self.root.is_dir():
            return []
        for directory in sorted(self.root.iterdir()):
            meta_path = directory / "meta.json"
            if directory.name.startswith(".") or not meta_path.is_file():
                continue
            meta = json.loads(meta_path.read_text())
            found.append(Entry(meta["name"], meta["sha256"], meta["quarantinedAt"], meta["revision"], directory))
        return found

    def put(self, source: Path, revision: str) -> Entry:
        """Move one config out of the conf dir."""
        data = source.read_bytes()
        digest = sha256_bytes(data)
        existing = next((e for e in self.entries() if e.name == source.name and e.sha256 == digest), None)
        if existing is None:
            self.root.mkdir(parents=True, exist_ok=True)
            now = time.time()
            final = self.root / f"{time.time_ns():020d}-{digest[:12]}"
            staging = self.root / f".staging-{final.name}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            atomic_write(staging / source.name, data)
            meta = {"name": source.name, "sha256": digest, "quarantinedAt": now, "revision": revision}
            atomic_write(staging / "meta.json", json.dumps(meta).encode())
            staging.rename(final)
            fsync_dir(self.root)
            existing = Entry(source.name, digest, now, revision, final)
        source.unlink()
        fsync_dir(source.parent)
        return existing

    def restore(self, entry: Entry, conf_dir: Path) -> Path:
        """Put a quarantined config back (atomically, checksum verified) and drop its entry."""
        target = conf_dir / entry.name
        if target.exists():
            raise FileExistsError(f"{target} exists: not overwriting it with the quarantined copy")
        atomic_write(target, entry.path.read_bytes())
        shutil.rmtree(entry.directory)
        fsync_dir(self.root)
        return target

    def restore_all(self, conf_dir: Path, skip: Set[str] = frozenset()) -> tuple[list[str], list[str]]:
        """Restore the newest entry of every name not in `skip`; (restored, conflicts) where a conflict is a name
        that the conf dir holds again (its plugin rewrote it), whose quarantined copy then stays."""
        newest: dict[str, Entry] = {}
        for entry in self.entries():
            newest[entry.name] = entry
        restored, conflicts = [], []
        present = {p.name for p in config_files(conf_dir)}
        for name, entry in sorted(newest.items()):
            if name in skip:
                continue
            if name in present:
                conflicts.append(name)
                continue
            self.restore(entry, conf_dir)
            restored.append(name)
        return restored, conflicts

    def drop(self, entry: Entry) -> None:
        """Forget an entry (only for copies of the agent's own config, which it renders afresh)."""
        shutil.rmtree(entry.directory)

    def clean_staging(self) -> None:
        """Remove half-made entries a crash left (their source is still in the conf dir)."""
        if self.root.is_dir():
            for staging in self.root.glob(".staging-*"):
                shutil.rmtree(staging, ignore_errors=True)
