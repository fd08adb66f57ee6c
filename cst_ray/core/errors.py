"""Errors a user can act on: each names the file, the row and the field (or config key)."""

from __future__ import annotations


class CSTError(Exception):
    """Base class for errors that the CLI prints as one line and exits non-zero."""


class ConfigError(CSTError):
    """A bad configuration value or key. `key` is the dotted path, e.g. `train.lr`."""

    def __init__(self, message: str, *, key: str | None = None, file: str | None = None):
        self.key = key
        self.file = file
        where = ", ".join(p for p in (f"file {file}" if file else "", f"key {key}" if key else "") if p)
        super().__init__(f"config error ({where}): {message}" if where else f"config error: {message}")


class InputDataError(CSTError):
    """A bad input file or row. `row` is 1-based (the data row, headers not counted); `key`, where
    given, is the config key that names the file."""

    def __init__(self, message: str, *, file: str, row: int | None = None, field: str | None = None,
                 key: str | None = None):
        self.message = message
        self.file = file
        self.row = row
        self.field = field
        self.key = key
        parts = [f"key {key}"] if key else []
        parts.append(f"file {file}")
        if row is not None:
            parts.append(f"row {row}")
        if field is not None:
            parts.append(f"field {field!r}")
        super().__init__(f"input error ({', '.join(parts)}): {message}")


class MissingDependencyError(CSTError):
    """An optional package is needed for the selected component."""


class StageError(CSTError):
    """A stage cannot run: its inputs are missing or unusable."""
