"""`plot`'s figure: what was trained in the title, training loss beside validation loss and accuracy, and the
rounds of a diverged run marked on a sane axis instead of an empty panel."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from florist_grpc.cli.curves import figure
from florist_grpc.cli.plot import title
from florist_grpc.progress import JobProgress
from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.testing.simulation import create_running, finish, play_rounds
from tests.cli.conftest import Invoke, play_diverged_rounds


def plotted(plane: ControlPlaneThread, job_id: str) -> Figure:
    """The figure `plot` draws for the job, as it draws it."""
    job = plane.get(job_id)
    progress = JobProgress.from_reports(job)
    rows = progress.rounds_table()
    return figure(rows, progress.n_clients, title(job, len(rows), progress.n_clients))


def edge_marks(ax: Axes) -> list[tuple[float, float]]:
    """(round, height as a fraction of the panel) of the markers drawn on the panel's edge."""
    return [
        (float(line.get_xdata()[0]), float(line.get_ydata()[0]))  # type: ignore[index]
        for line in ax.get_lines()
        if line.get_marker() == "X"
    ]


def test_a_diverged_job_marks_its_non_finite_rounds_on_a_sane_axis(
    cli: Invoke, plane: ControlPlaneThread, tmp_path: Path
) -> None:
    simulated = create_running(plane.plane, 2)
    play_diverged_rounds(simulated, 3)
    finish(plane.plane, simulated)
    png = tmp_path / "curves.png"
    result = cli("plot", simulated.job_id, "--out", png, "--address", plane.address)
    assert result.exit_code == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    val_loss, train_loss, accuracy = plotted(plane, simulated.job_id).axes
    for ax in (val_loss, train_loss):
        left, right = ax.get_xlim()
        assert left <= 1 and right >= 3 and right - left < 4  # the rounds, not -0.045 .. 0.045
        assert ax.get_ylim() == (0.0, 1.0)  # nothing finite to scale by
    # NaN and +inf on the top edge, -inf (the clients' training loss here) on the bottom edge; each round.
    assert sorted(edge_marks(val_loss)) == sorted((n, 0.97) for n in (1.0, 2.0, 3.0) for _ in range(3))
    assert sorted(edge_marks(train_loss)) == sorted(
        [(n, 0.97) for n in (1.0, 2.0, 3.0)] + [(n, 0.03) for n in (1.0, 2.0, 3.0) for _ in range(2)]
    )
    notes = [t.get_text() for ax in (val_loss, train_loss) for t in ax.texts]
    assert notes == ["aggregated: NaN at rounds 1, 2, 3", "aggregated: inf at rounds 1, 2, 3"]
    assert not edge_marks(accuracy) and accuracy.get_ylim() != (0.0, 1.0)  # finite: scaled as usual


def test_the_title_says_what_was_trained_and_training_loss_has_its_own_panel(plane: ControlPlaneThread) -> None:
    simulated = create_running(plane.plane, 2)
    play_rounds(simulated, 3)
    finish(plane.plane, simulated)
    fig = plotted(plane, simulated.job_id)
    assert fig.get_suptitle() == f"MLP with FEDAVG (SGD), 3 rounds, 2 clients - job {simulated.job_id}"
    assert [ax.get_ylabel() for ax in fig.axes] == ["validation loss", "training loss", "validation accuracy"]
    train_loss = fig.axes[1]
    clients = [line for line in train_loss.get_lines() if str(line.get_label()).startswith("client")]
    # The simulated clients' training loss: 1 / (round + client index).
    assert [list(line.get_ydata()) for line in clients] == [[1.0, 0.5, 1 / 3], [0.5, 1 / 3, 0.25]]
    assert not edge_marks(train_loss) and not train_loss.texts
    assert all(math.isfinite(y) for y in train_loss.get_ylim())
