"""What ``gyre demo`` prints: the timeline as it happens, then the summary table.

Every line carries the seconds since the demo started. Text that comes from the platform
(alert messages, gate reasons) is printed as :class:`rich.text.Text`, never as markup.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from gyre.demo.summary import Summary, Window

if TYPE_CHECKING:
    from rich.console import Console

MARKS = {
    "info": ("•", "cyan"),
    "ok": ("✓", "green"),
    "warn": ("!", "yellow"),
    "alert": ("⚠", "bold red"),
    "move": ("→", "magenta"),
    "status": ("·", "dim"),
}


class Timeline:
    """Prints timeline lines to ``console``, timed from ``started`` (``time.monotonic()``)."""

    def __init__(self, console: Console, started: float | None = None) -> None:
        self.console = console
        self.started = time.monotonic() if started is None else started

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, text: str, kind: str = "info", detail: str = "") -> None:
        """One line: the time, a mark for ``kind`` (see :data:`MARKS`), the text, a dim detail."""
        mark, style = MARKS[kind]
        line = Text.assemble(
            (f"{self.elapsed():6.1f}s ", "dim"),
            (f"{mark} ", style),
            (text, "dim" if kind == "status" else ""),
        )
        if detail:
            line.append(f"  {detail}", style="dim")
        self.console.print(line, soft_wrap=True)

    def phase(self, title: str) -> None:
        self.console.print()
        self.console.rule(Text(title, style="bold"), align="left")


def summary_table(summary: Summary, project: str) -> Table:
    """The closing table: quality before, during and after the drift, timings, traffic."""
    t = Table(title="gyre demo: summary", title_style="bold", show_header=False, box=None, padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    t.add_row("live AUC before the drift", _window(summary.before_drift))
    t.add_row("live AUC during the drift", _window(summary.during_drift))
    t.add_row("live AUC after promotion", _window(summary.after_promotion))
    if summary.canary:
        sides = ", ".join(f"v{w.version} {_auc(w)}" for w in summary.canary.values())
        t.add_row("canary, same traffic", Text(sides))
    t.add_row("drift → detected", _seconds(summary.seconds_to_detection))
    t.add_row("drift → live AUC alert", _seconds(summary.seconds_to_auc_alert))
    t.add_row("drift → retrained", _seconds(summary.seconds_to_retrain))
    t.add_row("drift → promoted", _seconds(summary.seconds_to_promotion))
    t.add_row("drifted features", Text(", ".join(summary.drifted_features) or "-"))
    served = f"{summary.requests_served:,}"
    if summary.requests_failed:
        served += f" ({summary.requests_failed:,} failed)"
    t.add_row("requests served", Text(served))
    t.add_row("predictions logged", Text(f"{summary.predictions_logged:,}"))
    t.add_row("labels fed back", Text(f"{summary.labels_fed_back:,}"))
    if summary.latency_p50_ms is not None and summary.latency_p99_ms is not None:
        t.add_row(
            "latency (client)",
            Text(f"p50 {summary.latency_p50_ms:.1f} ms, p99 {summary.latency_p99_ms:.1f} ms"),
        )
    t.add_row("took", Text(f"{summary.duration_s:.0f} s"))
    t.add_row("project", Text(project))
    return t


def _window(w: Window | None) -> Text:
    if w is None:
        return Text("-")
    return Text.assemble((_auc(w), "bold"), (f"  model v{w.version}, {labels_and_frauds(w)}", "dim"))


def labels_and_frauds(w: Window) -> str:
    """``"1,234 labels, 1 fraud"``: what a live AUC was measured on."""
    return f"{_count(w.labelled, 'label')}, {_count(w.frauds, 'fraud')}"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _auc(w: Window) -> str:
    return "-" if w.auc is None else f"{w.auc:.3f}"


def _seconds(value: float | None) -> Text:
    return Text("-" if value is None else f"{value:.1f} s")
