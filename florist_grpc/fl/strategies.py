"""The Flower strategies behind the catalog's names, wrapped so that every round is reported to Redis."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Metrics,
    Parameters,
    Scalar,
)
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import (
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    Strategy,
)

from florist_grpc.domain.divergence import DIVERGED, diverged, divergence_report
from florist_grpc.domain.training import FedProxSettings, TrainingConfig
from florist_grpc.fl.flower_api import StopRun
from florist_grpc.fl.reporter import RedisReporter

log = logging.getLogger("florist.fl.server")

TRAIN_LOSS = "train - loss"
TRAIN_ACCURACY = "train - prediction - accuracy"
VAL_LOSS = "val - loss"
VAL_ACCURACY = "val - prediction - accuracy"


def weighted_average(results: list[tuple[int, Metrics]]) -> Metrics:
    """Average each numeric metric over clients, weighted by their number of examples."""
    total = sum(n for n, _ in results) or 1
    keys = {k for _, m in results for k, v in m.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return {k: sum(n * float(m.get(k, 0.0)) for n, m in results) / total for k in sorted(keys)}


class ProximalWeight:
    """FL4Health's adaptive FedProx weight: lower it while the loss improves, raise it after `patience` misses."""

    def __init__(self, settings: FedProxSettings) -> None:
        self.value = settings.initial_proximal_weight
        self._adapt = settings.adapt_proximal_weight
        self._delta = settings.proximal_weight_delta
        self._patience = settings.proximal_weight_patience
        self._previous_loss = float("inf")
        self._misses = 0

    def update(self, loss: float) -> None:
        if not self._adapt:
            return
        if loss <= self._previous_loss:
            self.value = max(0.0, self.value - self._delta)
            self._misses = 0
        else:
            self._misses += 1
            if self._misses >= self._patience:
                self.value += self._delta
                self._misses = 0
        self._previous_loss = loss


Section = TypeVar("Section")


def _section(settings: Section | None, strategy: str) -> Section:
    """The strategy's own settings (a TrainingConfig built for this strategy always has them)."""
    if settings is None:
        raise ValueError(f"the training settings of this {strategy} run lack the strategy's own section")
    return settings


def build_base_strategy(
    name: str, training: TrainingConfig, n_clients: int, initial: Parameters, proximal: ProximalWeight | None
) -> Strategy:
    def fit_config(server_round: int) -> dict[str, Scalar]:
        out: dict[str, Scalar] = {"current_server_round": server_round}
        if proximal is not None:
            out["proximal_weight"] = proximal.value
        return out

    def evaluate_config(server_round: int) -> dict[str, Scalar]:
        return {"current_server_round": server_round}

    common: dict[str, Any] = {
        "fraction_fit": 1.0,
        "fraction_evaluate": 1.0,
        "min_fit_clients": n_clients,
        "min_evaluate_clients": n_clients,
        "min_available_clients": n_clients,
        "on_fit_config_fn": fit_config,
        "on_evaluate_config_fn": evaluate_config,
        "accept_failures": False,
        "initial_parameters": initial,
        "fit_metrics_aggregation_fn": weighted_average,
        "evaluate_metrics_aggregation_fn": weighted_average,
    }
    if name in ("FEDAVG", "FEDPROX"):
        return FedAvg(**common)
    if name == "FEDMEDIAN":
        return FedMedian(**common)
    if name in ("FEDADAM", "FEDYOGI", "FEDADAGRAD"):
        fedopt = _section(training.fedopt, name)
        step: dict[str, Any] = {"eta": fedopt.server_learning_rate, "tau": fedopt.tau}
        if training.learning_rate is not None:
            step["eta_l"] = training.learning_rate  # recorded by Flower, never used: left out, its own default
        if name == "FEDADAGRAD":
            return FedAdagrad(**common, **step)
        betas: dict[str, Any] = {"beta_1": fedopt.server_beta_1, "beta_2": fedopt.server_beta_2}
        if name == "FEDADAM":
            return FedAdam(**common, **step, **betas)
        return FedYogi(**common, **step, **betas)
    if name == "FEDAVGM":
        fedavgm = _section(training.fedavgm, name)
        return FedAvgM(
            **common, server_learning_rate=fedavgm.server_learning_rate, server_momentum=fedavgm.server_momentum
        )
    if name == "FEDTRIMMEDAVG":
        return FedTrimmedAvg(**common, beta=_section(training.trimmed_mean, name).beta)
    if name == "KRUM":
        krum = _section(training.krum, name)
        return Krum(
            **common,
            num_malicious_clients=krum.num_malicious_clients,
            num_clients_to_keep=krum.num_clients_to_keep,
        )
    raise KeyError(name)


def _fit_order(item: tuple[ClientProxy, FitRes]) -> tuple[int, bytes]:
    res = item[1]
    return res.num_examples, hashlib.sha256(b"".join(res.parameters.tensors)).digest()


def _evaluate_order(item: tuple[ClientProxy, EvaluateRes]) -> tuple[int, float, str]:
    res = item[1]
    return res.num_examples, res.loss, repr(sorted(res.metrics.items()))


class ReportingStrategy(Strategy):
    """Delegates to a Flower strategy and reports each round to Redis in FL4Health's server layout.

    Results are aggregated in an order fixed by their content, not by arrival, so that floating-point sums --
    and so a seeded job's losses -- are the same on every run. A failed client fails the round (and the run):
    silently aggregating fewer clients would hide a broken job. After each completed round the global model is
    handed to `on_round_model` (the checkpoint writer).

    A round whose aggregated loss is non-finite diverged: with `stop_on_divergence` the run ends after it (the
    report's `diverged` key says where, `divergence` holds it for the server process), otherwise it goes on.
    """

    def __init__(
        self,
        inner: Strategy,
        reporter: RedisReporter,
        proximal: ProximalWeight | None = None,
        local_epochs: int = 1,
        on_round_model: Callable[[int, Parameters], None] | None = None,
        stop_on_divergence: bool = True,
    ) -> None:
        self._inner = inner
        self._stop_on_divergence = stop_on_divergence
        self.divergence: dict[str, Any] | None = None
        self._reporter = reporter
        self._proximal = proximal
        self._local_epochs = local_epochs
        self._on_round_model = on_round_model
        self._started: dict[str, datetime] = {}
        self._parameters: Parameters | None = None

    def _begin(self, phase: str, server_round: int) -> None:
        started = self._started[phase] = datetime.now()
        self._reporter.report_round(server_round, **{f"{phase}_round_start": str(started)})

    def _timing(self, phase: str) -> dict[str, Any]:
        started, ended = self._started[phase], datetime.now()
        return {
            f"{phase}_round_start": str(started),
            f"{phase}_round_end": str(ended),
            f"{phase}_round_time_elapsed": round((ended - started).total_seconds()),
        }

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return self._inner.initialize_parameters(client_manager)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        self._begin("fit", server_round)
        out: list[tuple[ClientProxy, FitIns]] = self._inner.configure_fit(server_round, parameters, client_manager)
        return out

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if failures:
            raise RuntimeError(f"round {server_round}: {len(failures)} FL client(s) failed to fit: {failures[0]!r}")
        parameters, metrics = self._inner.aggregate_fit(server_round, sorted(results, key=_fit_order), failures)
        self._parameters = parameters
        if self._proximal is not None and TRAIN_LOSS in metrics:
            self._proximal.update(float(metrics[TRAIN_LOSS]))
        self._reporter.report_round(server_round, **self._timing("fit"), fit_round_metrics=dict(metrics))
        return parameters, metrics

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        self._begin("eval", server_round)
        out: list[tuple[ClientProxy, EvaluateIns]] = self._inner.configure_evaluate(
            server_round, parameters, client_manager
        )
        return out

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        if failures:
            raise RuntimeError(
                f"round {server_round}: {len(failures)} FL client(s) failed to evaluate: {failures[0]!r}"
            )
        loss, metrics = self._inner.aggregate_evaluate(server_round, sorted(results, key=_evaluate_order), failures)
        if self._on_round_model is not None and self._parameters is not None:
            self._on_round_model(server_round, self._parameters)
        # One report: the round's evaluation arrives whole (FL4Health writes the metrics in a second one). Like
        # FL4Health, no aggregated loss or metrics when there are none (no client evaluated: loss None; no client
        # metrics: {}); unlike it, the round's timing and eval_round_end still say the round is done (see
        # docs/models.md). A non-finite loss from clients is written ("NaN"): that is a diverged round.
        report: dict[str, Any] = {}
        if loss is not None:
            report["val - loss - aggregated"] = float(loss)
        report.update(round=server_round, **self._timing("eval"), fit_epoch=server_round * self._local_epochs)
        if metrics:
            report["eval_round_metrics_aggregated"] = dict(metrics)  # names as the clients report them, no suffix
        self._reporter.report_round(server_round, **report)
        if loss is not None and diverged(loss, len(results)):
            self._on_divergence(server_round, float(loss))
        return loss, metrics

    def _on_divergence(self, server_round: int, loss: float) -> None:
        if not self._stop_on_divergence:
            log.warning("round %d diverged: aggregated val loss %s; going on (stop_on_divergence)", server_round, loss)
            return
        self.divergence = divergence_report(server_round, loss)
        self._reporter.report_values(**{DIVERGED: self.divergence})
        loss_text = self.divergence["loss"]
        raise StopRun(f"round {server_round} diverged: aggregated val loss {loss_text} (stop_on_divergence is true)")

    def evaluate(self, server_round: int, parameters: Parameters) -> tuple[float, dict[str, Scalar]] | None:
        return None  # no centralised evaluation: the data lives on the clients
