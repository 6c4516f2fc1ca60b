"""The `auditor` command: verbs only. Each parses, calls one module, prints."""

from __future__ import annotations

import os
import sys

import typer
from sqlalchemy.exc import SQLAlchemyError

try:  # typer >= 0.25 carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer depends on click itself
    from click import exceptions as click_errors  # type: ignore[no-redef]  # click's own, same API

from auditor import __version__, logs
from auditor.cli import admin, alerts, fleet, ops, results, serve  # noqa: F401  (registers the commands)
from auditor.cli.common import app, fail, out
from auditor.errors import AuditorError

__all__ = ["app", "main"]


@app.command()
def version() -> None:
    """Print the auditor version."""
    out.print(__version__)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every user error ends as one line on stderr and exit code 2."""
    logs.configure(level=os.environ.get("AUDITOR_LOG_LEVEL", "warning"))
    try:
        # Without standalone mode click returns a typer.Exit's code instead of exiting.
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except AuditorError as exc:
        fail(exc.one_line(), exc.exit_code)
    except click_errors.NoArgsIsHelpError:
        sys.exit(0)
    except click_errors.UsageError as exc:
        ctx = f"{exc.ctx.command_path}: " if exc.ctx else ""
        fail(f"{ctx}{exc.format_message()}", 2)
    except click_errors.ClickException as exc:
        fail(exc.format_message(), 2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        fail("aborted", 130)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except OSError as exc:
        # A path that cannot be used (too long, unreadable, a directory...): input, not a bug.
        fail(str(exc), 2)
    except SQLAlchemyError as exc:
        # The database failed mid-command: samples stored until then are kept.
        fail(f"database: {type(exc).__name__}: {getattr(exc, 'orig', None) or exc}", 1)
