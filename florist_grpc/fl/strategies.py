"""The Flower strategies behind the catalog's names, wrapped so that every round is reported to Redis."""

from __future__ import annotations

from typing import Any

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

from florist_grpc.fl.reporter import RedisReporter, now

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

    def __init__(self, config: dict[str, Any]) -> None:
        self.value = float(config.get("initial_proximal_weight", 0.0))
        self._adapt = bool(config.get("adapt_proximal_weight", False))
        self._delta = float(config.get("proximal_weight_delta", 0.0))
        self._patience = int(config.get("proximal_weight_patience", 0))
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


def build_base_strategy(
    name: str, config: dict[str, Any], n_clients: int, initial: Parameters, proximal: ProximalWeight | None
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
    fedopt: dict[str, Any] = {
        "eta": float(config.get("server_learning_rate", 0.1)),
        "eta_l": float(config.get("learning_rate", 0.1)),
        "tau": float(config.get("tau", 1e-9)),
    }
    betas: dict[str, Any] = {
        "beta_1": float(config.get("server_beta_1", 0.9)),
        "beta_2": float(config.get("server_beta_2", 0.99)),
    }
    if name in ("FEDAVG", "FEDPROX"):
        return FedAvg(**common)
    if name == "FEDADAM":
        return FedAdam(**common, **fedopt, **betas)
    if name == "FEDYOGI":
        return FedYogi(**common, **fedopt, **betas)
    if name == "FEDADAGRAD":
        return FedAdagrad(**common, **fedopt)
    if name == "FEDAVGM":
        return FedAvgM(
            **common,
            server_learning_rate=float(config.get("server_learning_rate", 1.0)),
            server_momentum=float(config.get("server_momentum", 0.9)),
        )
    if name == "FEDMEDIAN":
        return FedMedian(**common)
    if name == "FEDTRIMMEDAVG":
        return FedTrimmedAvg(**common, beta=float(config.get("beta", 0.2)))
    if name == "KRUM":
        return Krum(
            **common,
            num_malicious_clients=int(config.get("num_malicious_clients", 0)),
            num_clients_to_keep=int(config.get("num_clients_to_keep", 0)),
        )
    raise KeyError(name)


class ReportingStrategy(Strategy):
    """Delegates to a Flower strategy and reports round starts, ends and aggregated metrics to Redis.

    A failed client fails the round (and the run): silently aggregating fewer clients would hide a broken job.
    """

    def __init__(self, inner: Strategy, reporter: RedisReporter, proximal: ProximalWeight | None = None) -> None:
        self._inner = inner
        self._reporter = reporter
        self._proximal = proximal

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return self._inner.initialize_parameters(client_manager)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        self._reporter.report_round(server_round, fit_round_start=now())
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
        parameters, metrics = self._inner.aggregate_fit(server_round, results, failures)
        if self._proximal is not None and TRAIN_LOSS in metrics:
            self._proximal.update(float(metrics[TRAIN_LOSS]))
        self._reporter.report_round(server_round, fit_round_end=now(), fit_round_metrics=dict(metrics))
        return parameters, metrics

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        self._reporter.report_round(server_round, eval_round_start=now())
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
        loss, metrics = self._inner.aggregate_evaluate(server_round, results, failures)
        aggregated: dict[str, Scalar] = {f"{VAL_LOSS} - aggregated": float(loss) if loss is not None else 0.0}
        aggregated.update({f"{k} - aggregated": v for k, v in metrics.items() if k != VAL_LOSS})
        self._reporter.report_round(server_round, eval_round_end=now(), eval_round_metrics_aggregated=aggregated)
        return loss, metrics

    def evaluate(self, server_round: int, parameters: Parameters) -> tuple[float, dict[str, Scalar]] | None:
        return None  # no centralised evaluation: the data lives on the clients
