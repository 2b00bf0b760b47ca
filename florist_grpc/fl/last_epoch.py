"""A round's training loss and accuracy as a client reports them: over its last local epoch, as FL4Health does.

FL4Health's BasicClient clears its loss meter and training metrics at the start of every local epoch and reports
the round's `fit_round_losses` and `fit_round_metrics` from the last one. Averaged over every epoch instead, a
round's loss would read higher than FL4Health's for the same training (its first epochs weigh in), which a FLorist
user comparing the two would see. One difference remains, on purpose: the loss is the mean over the epoch's samples
(FL4Health: over its batches, the same number when every batch is full), like our validation loss and the FL
server's sample-weighted aggregate.
"""

from __future__ import annotations


class LastEpoch:
    """Adds up the training steps of the current local epoch; a step of a new epoch starts the sums afresh."""

    def __init__(self) -> None:
        self._epoch: int | None = None
        self._loss = 0.0  # sum of the per-sample loss over the epoch's samples
        self._correct = 0
        self._samples = 0

    def add(self, epoch: int, mean_loss: float, correct: int, samples: int) -> None:
        """One step (batch) of local epoch `epoch`: its mean loss, how many predictions were right, of how many."""
        if epoch != self._epoch:
            self._epoch, self._loss, self._correct, self._samples = epoch, 0.0, 0, 0
        self._loss += mean_loss * samples
        self._correct += correct
        self._samples += samples

    @property
    def loss(self) -> float:
        """The mean loss over the last epoch's samples (0.0 before any step)."""
        return self._loss / max(self._samples, 1)

    @property
    def accuracy(self) -> float:
        """The share of the last epoch's samples predicted right (0.0 before any step)."""
        return self._correct / max(self._samples, 1)
