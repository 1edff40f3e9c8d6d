"""What a running process holds, read from /proc (Linux): memory and open file descriptors."""

from __future__ import annotations

from pathlib import Path


def memory_kib(pid: int, field: str = "VmRSS") -> int:
    """`VmRSS` (now) or `VmHWM` (peak) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(f"{field} not in /proc/{pid}/status")


def open_fds(pid: int) -> int:
    """How many file descriptors the process holds (sockets, files, pipes)."""
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))
