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
    values = [figure(row.value) for row in rows]
    metric_w = max(len("metric"), *(len(row.metric) for row in rows))
    value_w = max(len("value"), *(len(v) for v in values))
    unit_w = max(len("unit"), *(len(row.unit) for row in rows))
    lines = [
        f"{'metric'.ljust(metric_w)}  {'value'.rjust(value_w)}  {'unit'.ljust(unit_w)}",
        f"{'-' * metric_w}  {'-' * value_w}  {'-' * unit_w}",
    ]
    lines += [f"{r.metric.ljust(metric_w)}  {v.rjust(value_w)}  {r.unit}" for r, v in zip(rows, values, strict=True)]
    return "\n".join(line.rstrip() for line in lines)
