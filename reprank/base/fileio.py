"""The file chores every module needs, written once: read JSON lines or CSV, write a file atomically,
and claim an output folder that must be new (nothing a user made is ever overwritten)."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

from reprank.base.errors import UserError


class FileFormatError(UserError, ValueError):
    """A file is missing, not UTF-8, or not in the expected format: the message names file and line."""


def read_text(path: str | Path, error=FileFormatError) -> str:
    """A UTF-8 text file; a missing or undecodable file is a one-line ``error`` (as in :func:`read_jsonl`)."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, expected a file") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start}); "
                    "save it as UTF-8 and try again") from None


def read_jsonl(path: str | Path, error=FileFormatError) -> list[dict]:
    """JSON objects, one per line; row i is line i. Blank lines are allowed only at the end.

    ``error`` is the exception class raised (a caller's own subclass of :class:`UserError`, e.g. DataError).
    """
    text = read_text(path, error)
    rows = []
    for number, line in enumerate(text.rstrip().split("\n"), start=1):
        if not line.strip():
            if number == 1:
                break  # an empty file: no rows
            raise error(f"{path}, line {number}: empty line (one JSON object per line expected)")
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{path}, line {number}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise error(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def read_csv(path: str | Path, required: Sequence[str] = (), error=FileFormatError) -> list[dict]:
    """CSV rows as dicts, skipping leading `#` comment lines only (quoted fields may contain `#`).

    ``error`` as in :func:`read_jsonl`. Missing ``required`` columns and ragged rows are errors.
    """
    lines = read_text(path, error).splitlines(keepends=True)
    start = 0
    while start < len(lines) and (lines[start].startswith("#") or not lines[start].strip()):
        start += 1
    reader = csv.DictReader(io.StringIO("".join(lines[start:]), newline=""))
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise error(f"{path}: invalid CSV near data row {reader.line_num} ({exc})") from None
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise error(f"{path}: missing required column(s) {missing}; header is {header}")
    for i, row in enumerate(rows, start=1):
        if None in row or None in row.values():
            raise error(f"{path}, row {i}: has {len(row.get(None, []))} extra or missing field(s) vs the header")
    return rows


def write_jsonl(rows, path: str | Path) -> Path:
    """Write dicts as JSON lines, atomically."""
    return atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename: a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def atomic_write_json(path: str | Path, value, **dumps_kwargs) -> Path:
    return atomic_write_text(path, json.dumps(value, **{"indent": 2, **dumps_kwargs}))


def new_output_folder(path: str | Path, what: str = "output", option: str = "--output") -> Path:
    """Create ``path`` as an output folder; it may exist only if empty. Never overwrites."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(f"{path} exists and is not an empty folder; {what} never overwrites: pick a new {option}")
    path.mkdir(parents=True, exist_ok=True)
    return path
