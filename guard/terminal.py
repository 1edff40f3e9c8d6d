"""Progress on a terminal (rich), and nothing at all anywhere else.

A progress bar is for a person watching: when stderr is not a TTY (a pipe, a journal, a test)
or the output is JSON for a program, commands stay quiet and print only their results.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

Advance = Callable[[str], None]


def wants_progress(json_output: bool) -> bool:
    """A person is watching stderr and no program is reading JSON from stdout."""
    return not json_output and sys.stderr.isatty()


@contextmanager
def progress(total: int, *, enabled: bool) -> Iterator[Advance]:
    """A callable that advances one step with a description; a no-op when not enabled."""
    if not enabled:
        yield lambda _description: None
        return
    columns = (TextColumn("{task.description:<40.40}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("", total=total)
        # file and service names are shown as they are, never read as rich markup
        yield lambda description: bar.update(task, advance=1, description=escape(description))
