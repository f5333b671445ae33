"""Sizes and sha256 of bundle files, recorded at export and verified at load."""

from __future__ import annotations

import hashlib
from pathlib import Path

from edge_hired.bundle.manifest import MANIFEST_NAME, BundleError, FileRecord

_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_records(root: Path) -> dict[str, FileRecord]:
    """Every file under root except the manifest, by POSIX relative path."""
    records = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        if name != MANIFEST_NAME:
            records[name] = FileRecord(bytes=path.stat().st_size, sha256=sha256_of(path))
    return records


def verify_files(root: Path, records: dict[str, FileRecord], check_hashes: bool = True) -> None:
    """Refuse a bundle with a missing, resized or (when checking hashes) altered file."""
    for name, record in records.items():
        path = root / name
        if not path.is_file():
            raise BundleError(f"{root}: file {name} listed in the manifest is missing")
        size = path.stat().st_size
        if size != record.bytes:
            raise BundleError(f"{path}: expected {record.bytes} bytes, got {size} (file changed)")
        if check_hashes and sha256_of(path) != record.sha256:
            raise BundleError(
                f"{path}: sha256 mismatch with the manifest (file changed or corrupt)"
            )
