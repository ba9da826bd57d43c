"""A small OCI image writer (stdlib only): layers from host files, one image per archive, no Docker, no registry.

An archive holds an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`) and a Docker-style
`manifest.json`, so `ctr images import` of containerd 1.6 and 2.x both name the image from it. Layers are
reproducible: sorted entries, mtime 0, uid/gid 0.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Layer:
    """Files of one layer: image path -> host path (a file, a symlink, or a directory copied recursively)."""

    files: dict[str, Path] = field(default_factory=dict)
    data: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # image path -> (content, mode)
    symlinks: dict[str, str] = field(default_factory=dict)  # image path -> target
    dirs: set[str] = field(default_factory=set)

    def add_tree(self, image_path: str, host_path: Path, skip: Iterable[str] = ()) -> None:
        skipped = tuple(skip)
        for root, dirnames, filenames in os.walk(host_path):
            dirnames[:] = [d for d in dirnames if d not in skipped]
            rel = Path(root).relative_to(host_path)
            self.dirs.add(str(Path(image_path) / rel))
            for name in filenames + [d for d in dirnames if (Path(root) / d).is_symlink()]:
                if name in skipped or name.endswith(".pyc"):
                    continue
                self.files[str(Path(image_path) / rel / name)] = Path(root) / name

    def tar(self) -> bytes:
        entries: dict[str, tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]] = {}

        def parents(path: str) -> None:
            parts = Path(path.lstrip("/")).parts
            for i in range(1, len(parts)):
                p = "/".join(parts[:i])
                if p not in entries:
                    info = tarfile.TarInfo(p)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    entries[p] = info

        for d in self.dirs:
            key = d.lstrip("/")
            if not key:
                continue
            parents(d)
            info = tarfile.TarInfo(key)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            entries[key] = info
        for path, host in self.files.items():
            key = path.lstrip("/")
            parents(path)
            info = tarfile.TarInfo(key)
            st = host.lstat()
            if stat.S_ISLNK(st.st_mode):
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, str(host.readlink()), 0o777
                entries[key] = info
            else:
                content = host.read_bytes()
                info.size, info.mode = len(content), stat.S_IMODE(st.st_mode)
                entries[key] = (info, content)
        for path, (content, mode) in self.data.items():
            key = path.lstrip("/")
            parents(path)
            info = tarfile.TarInfo(key)
            info.size, info.mode = len(content), mode
            entries[key] = (info, content)
        for path, target in self.symlinks.items():
            key = path.lstrip("/")
            parents(path)
            info = tarfile.TarInfo(key)
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            entries[key] = info
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for key in sorted(entries):
                entry = entries[key]
                info, content = entry if isinstance(entry, tuple) else (entry, b"")
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                tar.addfile(info, io.BytesIO(content) if info.isreg() else None)
        return buf.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Archive:
    """Several images in one archive: a layer they share is stored (and imported, and unpacked) once."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.index: list[dict[str, object]] = []
        self.docker: list[dict[str, object]] = []
        # id(layer) -> (layer, diff id, digest, size); the layer is kept so that its id is never reused
        self._layers: dict[int, tuple[Layer, str, str, int]] = {}

    def _layer(self, layer: Layer) -> tuple[str, str, int]:
        if id(layer) not in self._layers:
            raw = layer.tar()
            gz = gzip.compress(raw, compresslevel=1, mtime=0)
            self.blobs[_digest(gz)] = gz
            self._layers[id(layer)] = (layer, _digest(raw), _digest(gz), len(gz))
        _, diff_id, digest, size = self._layers[id(layer)]
        return diff_id, digest, size

    def add(
        self,
        name: str,
        layers: list[Layer],
        *,
        entrypoint: list[str] | None = None,
        cmd: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str = "/",
    ) -> str:
        """Add `name` (a full reference, `registry/repo:tag`) made of `layers`; return its manifest digest."""
        built = [self._layer(layer) for layer in layers]
        layer_descs = [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size}
            for _, digest, size in built
        ]
        environment = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **(env or {})}
        config = {
            "architecture": "amd64",
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": {
                "Env": [f"{k}={v}" for k, v in environment.items()],
                "Entrypoint": entrypoint,
                "Cmd": cmd,
                "WorkingDir": workdir,
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id for diff_id, _, _ in built]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "cni-operator hack/images"} for _ in layers],
        }
        config_bytes = json.dumps(config, sort_keys=True).encode()
        self.blobs[_digest(config_bytes)] = config_bytes
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _digest(config_bytes),
                "size": len(config_bytes),
            },
            "layers": layer_descs,
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
        self.blobs[_digest(manifest_bytes)] = manifest_bytes
        tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
        self.index.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": _digest(manifest_bytes),
                "size": len(manifest_bytes),
                "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag},
            }
        )
        self.docker.append(
            {
                "Config": "blobs/sha256/" + _digest(config_bytes)[7:],
                "RepoTags": [name],
                "Layers": ["blobs/sha256/" + digest[7:] for _, digest, _ in built],
            }
        )
        return _digest(manifest_bytes)

    def write(self, archive: Path) -> None:
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": self.index}
        files = {
            "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
            "index.json": json.dumps(index, sort_keys=True).encode(),
            "manifest.json": json.dumps(self.docker).encode(),
            **{f"blobs/sha256/{d[7:]}": b for d, b in self.blobs.items()},
        }
        archive.parent.mkdir(parents=True, exist_ok=True)
        tmp = archive.with_name(archive.name + ".tmp")
        with tarfile.open(tmp, "w") as tar:
            for path in ["blobs", "blobs/sha256"]:
                info = tarfile.TarInfo(path)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            for path, content in files.items():
                info = tarfile.TarInfo(path)
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))
        tmp.rename(archive)


def write_image(archive: Path, name: str, layers: list[Layer], **config: object) -> str:
    """One image in one archive; returns the manifest digest."""
    built = Archive()
    digest = built.add(name, layers, **config)  # type: ignore[arg-type]
    built.write(archive)
    return digest
