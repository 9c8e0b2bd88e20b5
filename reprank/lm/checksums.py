"""A record of a converted model's weights, so a damaged cache is noticed and rebuilt.

A disk error, an interrupted copy or a truncated file would otherwise fail deep inside ``from_pretrained``
(or, worse, load wrong weights). ``reprank.lm.models`` writes ``CHECKSUM.json`` (sha256, size and mtime of
every ``*.safetensors``) beside the converted default model and checks it on each load: size and mtime
against the record, plus the safetensors header (about a millisecond); the full sha256 only when size or
mtime differ or there is no record yet.

Measured on this project's shared 2-core CPU host, for the 538 MB default: the size+mtime+header check
takes ~1 ms; the full sha256 ~1.3 s with the file in the page cache (7 s on a cold read, other jobs
running), against a <1 s load from the cache. Hashing on every load (or once per process) would more
than double the load time, so it is kept for when size or mtime say the file changed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

CHECKSUM_FILE = "CHECKSUM.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _file_record(path: Path, sha256: str | None = None) -> dict:
    stat = path.stat()
    return {"sha256": sha256 or _sha256(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def write_checksum(folder: Path) -> Path:
    """Write sha256, size and mtime of every ``*.safetensors`` in ``folder`` to its ``CHECKSUM.json``."""
    files = {p.name: _file_record(p) for p in sorted(folder.glob("*.safetensors"))}
    path = folder / CHECKSUM_FILE
    path.write_text(json.dumps({"files": files}, indent=2))
    return path


def _unreadable(path: Path) -> str | None:
    """Why safetensors cannot read the file's header and tensor offsets, or None."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except Exception as exc:  # safetensors raises SafetensorError, OSError or ValueError by case
        return f"{path.name} unreadable: {str(exc).splitlines()[0][:100]}"
    return None


def cache_problem(folder: Path) -> str | None:
    """Why the converted model in ``folder`` is damaged, or None when it is intact.

    A missing record (a cache made before records existed) is written now, once the files read.
    A file whose size or mtime changed is hashed; if its sha256 still matches, the record is refreshed.
    """
    try:
        record = json.loads((folder / CHECKSUM_FILE).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        record = None
    names = sorted(record) if record else sorted(p.name for p in folder.glob("*.safetensors"))
    if not names:
        return "no safetensors file"
    refreshed = dict(record or {})
    for name in names:
        path = folder / name
        if not path.is_file():
            return f"{name} missing"
        problem = _unreadable(path)
        if problem:
            return problem
        stat, known = path.stat(), (record or {}).get(name)
        if known and (stat.st_size, stat.st_mtime_ns) == (known.get("size"), known.get("mtime_ns")):
            continue
        if known and stat.st_size != known.get("size"):
            return f"{name} is {stat.st_size} bytes, expected {known.get('size')}"
        sha256 = _sha256(path)
        if known and sha256 != known.get("sha256"):
            return f"{name} sha256 differs from the one recorded at conversion"
        refreshed[name] = _file_record(path, sha256)
    if refreshed != record:
        (folder / CHECKSUM_FILE).write_text(json.dumps({"files": refreshed}, indent=2))
    return None
