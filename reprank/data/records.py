"""One-line checks of a record's fields, written once: the error names the file, the row and the field, e.g.
``data/benign_prompts.jsonl, row 3, field 'prompt': must be a non-empty string``.

``error`` is the exception class raised (a caller's own subclass of :class:`UserError`; `reprank.data.sources` binds
its DataError, as it does for `reprank.base.fileio`'s readers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reprank.base.errors import UserError


class RecordError(UserError, ValueError):
    """A record's field is missing or has the wrong type or value: the message names file, row and field."""


def field_error(origin: str, row: int, field: str, problem: str, error: type[Exception] = RecordError) -> Exception:
    return error(f"{origin}, row {row}, field '{field}': {problem}")


def check_str(origin: str, row: int, record: Mapping, field: str, choices: Sequence[str] = (),
              error: type[Exception] = RecordError) -> str:
    """A non-empty string; when ``choices`` are given, one of them."""
    if field not in record:
        raise field_error(origin, row, field, "missing", error)
    value = record[field]
    if not isinstance(value, str):
        raise field_error(origin, row, field, f"must be a non-empty string, got {type(value).__name__} {value!r:.40}",
                          error)
    if not value.strip():
        raise field_error(origin, row, field, "must be a non-empty string, got an empty or whitespace-only string",
                          error)
    if choices and value not in choices:
        raise field_error(origin, row, field, f"must be one of {', '.join(choices)}, got {value!r:.40}", error)
    return value


def check_bool(origin: str, row: int, record: Mapping, field: str, optional: bool = False,
               error: type[Exception] = RecordError) -> bool | None:
    """true or false; with ``optional``, also null or absent (None)."""
    if field not in record and not optional:
        raise field_error(origin, row, field, "missing", error)
    value = record.get(field)
    if isinstance(value, bool) or (optional and value is None):
        return value
    allowed = "true, false or null" if optional else "true or false"
    raise field_error(origin, row, field, f"must be {allowed}, got {type(value).__name__} {value!r:.40}", error)
