"""User-facing errors: each one renders as a single line and maps to exit code 2."""

from __future__ import annotations


class AuditorError(Exception):
    """An error caused by the user's input (a file, a flag, the environment)."""

    exit_code = 2

    def one_line(self) -> str:
        return " ".join(str(self).split())


class InputFileError(AuditorError):
    """A problem in a file the user wrote: names the file, the field and the line if known."""

    def __init__(self, path: str, message: str, field: str | None = None, line: int | None = None):
        self.path = path
        self.field = field
        self.line = line
        self.message = message
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


class ConfigError(InputFileError):
    pass


class ProbeFileError(InputFileError):
    pass


class UsageError(AuditorError):
    pass
