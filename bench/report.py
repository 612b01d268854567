"""The results table (Markdown) and the README's performance section."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

START = "<!-- performance:start -->"
END = "<!-- performance:end -->"
HEADER = (
    "| workload | server | database | result | ratio to bare | p99 | target | met? |",
    "|---|---|---|---:|---:|---:|---|---|",
)


@dataclass(frozen=True)
class Row:
    workload: str
    server: str
    result: str
    ratio: str = "—"
    p99: str = "—"
    target: str = ""
    met: bool | None = None  # None: nothing to meet (a reference figure)
    note: str = ""
    database: str = "SQLite"

    def markdown(self) -> str:
        verdict = {True: "yes", False: "**no**", None: "—"}[self.met]
        if self.note:
            verdict = f"{verdict} ({self.note})"
        cells = (self.workload, self.server, self.database, self.result, self.ratio, self.p99)
        return "| " + " | ".join((*cells, self.target, verdict)) + " |"


def per_second(value: float, unit: str = "req/s") -> str:
    return f"{value:,.0f} {unit}"


def ratio(value: float, reference: float, label: str = "bare") -> str:
    share = value / reference if reference else 0.0
    return f"{share:.2f} of {reference:,.0f} ({label})"


def milliseconds(value: float) -> str:
    return f"{value:.1f} ms"


def table(rows: list[Row]) -> str:
    return "\n".join([*HEADER, *(row.markdown() for row in rows)])


def section(rows: list[Row], machine: str, date: str, command: str, method: str) -> str:
    return "\n\n".join(
        [
            "## Performance",
            f"Measured on {date} with `{command}`.",
            f"Machine: {machine}.",
            method,
            table(rows),
        ]
    )


def write_readme(readme: Path, text: str) -> None:
    """Replace what stands between the performance markers, and nothing else."""
    content = readme.read_text(encoding="utf-8")
    start, end = content.find(START), content.find(END)
    if start == -1 or end < start:
        raise RuntimeError(f"{readme} lacks the markers {START} ... {END}")
    before, after = content[: start + len(START)], content[end:]
    readme.write_text(f"{before}\n{text}\n{after}", encoding="utf-8")
