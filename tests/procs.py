"""Processes as /proc shows them (Linux): the tests that count or inspect a poller's worker
processes read them here."""

from __future__ import annotations

from pathlib import Path


def processes() -> dict[int, tuple[str, int]]:
    """Each process's state letter and parent, from /proc."""
    found: dict[int, tuple[str, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # exited while we looked
            state, parent = stat.rsplit(")", 1)[1].split()[:2]
            found[int(entry.name)] = (state, int(parent))
    return found


def descendants(root: int) -> set[int]:
    """Every live process started by ``root`` or by one of its descendants."""
    parent_of = {pid: parent for pid, (_, parent) in processes().items()}
    found: set[int] = set()
    grew = True
    while grew:
        more = {pid for pid, parent in parent_of.items() if parent in found | {root}} - found
        found |= more
        grew = bool(more)
    return found


def running(pids: set[int]) -> set[int]:
    """Those of ``pids`` that still run (an exited process that nobody has reaped yet is a
    zombie: gone, holding no memory)."""
    found = processes()
    return {pid for pid in pids if pid in found and found[pid][0] != "Z"}
