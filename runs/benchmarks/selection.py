"""Pick the named parts of a measurement (bench phases, chaos scenarios) from --only and --skip."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Named(Protocol):
    name: str


def named_select[N: Named](items: Sequence[N], only: list[str], skip: list[str], *, kind: str) -> list[N]:
    """Return the items to run, in their order: ``only`` those (all when empty), minus ``skip``."""
    names = [item.name for item in items]
    unknown = sorted(set(only + skip) - set(names))
    if unknown:
        raise ValueError(f"unknown {kind} {', '.join(unknown)}; the {kind}s are {', '.join(names)}")
    return [item for item in items if (not only or item.name in only) and item.name not in skip]


def names_parse(value: str) -> list[str]:
    """Parse a comma-separated list of names."""
    return [name.strip() for name in value.split(",") if name.strip()]
