"""Learning curves as a matplotlib figure: validation loss, training loss and validation accuracy per round,
aggregated and per client. A non-finite value (a diverged run: NaN, inf) cannot be drawn as a point: it is marked
at the edge of its panel, so a diverged job shows where it diverged instead of an empty panel."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from florist_grpc.progress import RoundRow, fmt, train_loss_note

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Where on the y axis (as a fraction of the panel's height) a non-finite value is marked: inf and NaN at the
# top, -inf at the bottom.
TOP, BOTTOM = 0.97, 0.03
NON_FINITE_COLOR = "tab:red"
AGGREGATED = "aggregated"
MARKS_LISTED = 5  # rounds named in a panel's note before `...`


def _aggregated_legend(rows: list[RoundRow]) -> str:
    return AGGREGATED


def _train_loss_legend(rows: list[RoundRow]) -> str:
    """`aggregated (the clients' mean, unweighted)`: which training loss the thick line is."""
    note = train_loss_note(rows).removeprefix("train loss: ")
    return f"{AGGREGATED} ({note})" if note else AGGREGATED


@dataclass(frozen=True)
class Panel:
    """One panel: what it shows, how to read the aggregated and one client's value from a round, and the legend
    of the aggregated line."""

    label: str
    aggregated: Callable[[RoundRow], float | None]
    client: Callable[[RoundRow, int], float | None]
    aggregated_legend: Callable[[list[RoundRow]], str] = _aggregated_legend


PANELS = (
    Panel("validation loss", lambda r: r.loss, lambda r, i: r.client_loss.get(i)),
    Panel("training loss", lambda r: r.train_loss, lambda r, i: r.client_train_loss.get(i), _train_loss_legend),
    Panel("validation accuracy", lambda r: r.accuracy, lambda r, i: r.client_accuracy.get(i)),
)


def _draw_series(
    ax: Axes, rounds: list[int], values: list[float | None], label: str, aggregated: bool = False
) -> dict[str, list[int]]:
    """Plot the finite values (gaps where there is none) and mark the non-finite ones: their rounds by spelling."""
    finite = [v if v is not None and math.isfinite(v) else math.nan for v in values]
    [drawn] = ax.plot(rounds, finite, "o-" if aggregated else ".--", lw=2.5 if aggregated else 1, label=label)
    marker = {"color": NON_FINITE_COLOR, "ms": 11, "zorder": 5} if aggregated else {"color": drawn.get_color()}
    marked: dict[str, list[int]] = {}
    for n, v in zip(rounds, values, strict=True):
        if v is not None and not math.isfinite(v):
            # x in data coordinates, y as a fraction of the panel: on the panel's edge whatever its scale.
            ax.plot([n], [BOTTOM if v < 0 else TOP], "X", transform=ax.get_xaxis_transform(), clip_on=False, **marker)
            marked.setdefault(fmt(v), []).append(n)
    return marked


def _marks_note(marked: dict[str, list[int]]) -> str:
    """`aggregated: NaN at rounds 1, 2, 3, 4, 5, ...`"""
    parts = []
    for spelling, rounds in marked.items():
        listed = ", ".join(str(n) for n in rounds[:MARKS_LISTED]) + (", ..." if len(rounds) > MARKS_LISTED else "")
        parts.append(f"{spelling} at round{'s' * (len(rounds) > 1)} {listed}")
    return f"{AGGREGATED}: " + "; ".join(parts)


def _draw_panel(ax: Axes, panel: Panel, rows: list[RoundRow], n_clients: int) -> None:
    rounds = [r.number for r in rows]
    aggregated = [panel.aggregated(r) for r in rows]
    clients = [[panel.client(r, i) for r in rows] for i in range(n_clients)]
    marked = _draw_series(ax, rounds, aggregated, panel.aggregated_legend(rows), aggregated=True)
    for i, values in enumerate(clients):
        _draw_series(ax, rounds, values, f"client {i}")
    if marked:  # the aggregated value is what the job is judged by: said in words, not only with markers
        ax.text(0.02, 0.88, _marks_note(marked), transform=ax.transAxes, color=NON_FINITE_COLOR, fontsize="small")
    if not any(v is not None and math.isfinite(v) for v in [*aggregated, *(v for c in clients for v in c)]):
        ax.set_ylim(0.0, 1.0)  # no finite value to scale by: a plain axis rather than one around nothing
        ax.set_yticklabels([])
    ax.set_xlim(min(rounds) - 0.5, max(rounds) + 0.5)
    ax.set_xlabel("round")
    ax.set_ylabel(panel.label)
    ax.set_title(panel.label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="best")


def figure(rows: list[RoundRow], n_clients: int, title: str) -> Figure:
    """The three panels side by side under `title` (rows: at least one round)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(15, 4.4))
    for ax, panel in zip(fig.subplots(1, len(PANELS)), PANELS, strict=True):
        _draw_panel(ax, panel, rows, n_clients)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    return fig
