"""Format the benchmark's parameters and figures as aligned plain-text tables."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One measured figure."""

    metric: str
    value: float | None  # None: not measured (the phase failed, or this tree lacks what it measures)
    unit: str


def figure(value: float | None) -> str:
    """Format a figure with a precision that suits its size; ``n/a`` when there is none."""
    if value is None:
        return "n/a"
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def parameters_table(parameters: list[tuple[str, str]]) -> str:
    """Return ``name  value`` lines, names padded to one width."""
    width = max(len(name) for name, _ in parameters)
    return "\n".join(f"  {name.ljust(width)}  {value}" for name, value in parameters)


def figures_table(rows: list[Row]) -> str:
    """Return the figures as a table with a header: metric, value (right-aligned), unit."""
    return text_table(("metric", "value", "unit"), [(r.metric, figure(r.value), r.unit) for r in rows], right=(1,))


def text_table(header: tuple[str, ...], rows: list[tuple[str, ...]], *, right: tuple[int, ...] = ()) -> str:
    """Return rows as aligned columns under ``header`` and a rule; the columns in ``right`` are right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        padded = (
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(padded).rstrip()

    return "\n".join([line(header), line(tuple("-" * width for width in widths)), *(line(row) for row in rows)])
