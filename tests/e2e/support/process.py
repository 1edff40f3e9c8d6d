"""Stopping the servers the end-to-end tests start."""

from __future__ import annotations

import subprocess
from typing import Any


def stop(process: subprocess.Popen[Any]) -> int:
    """SIGTERM (so mitmdump runs the addon's `done`), then wait; SIGKILL if it hangs. The exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode
