"""The FL server process: `python -m florist_grpc.fl.server` (the run in FLORIST_RUN).

Exit codes: 0 when every round ran (the control plane then also requires fit_end in the report); 3 when the run
diverged and was stopped (the report's `diverged` key says where; fit_end is reported as well); 1 anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from florist_grpc.fl.process import prepare_process, run_then_exit, use_cpus
from florist_grpc.fl.run_config import ServerRun, take_run_json

EXIT_DIVERGED = 3


def run(cfg: ServerRun) -> None:
    from datetime import datetime
    from pathlib import Path

    from flwr.common import Parameters, ndarrays_to_parameters, parameters_to_ndarrays

    from florist_grpc.fl import flower_api
    from florist_grpc.fl.checkpoints import ModelSaver
    from florist_grpc.fl.models import build_model
    from florist_grpc.fl.readiness import signal_ready
    from florist_grpc.fl.reporter import RedisReporter, now
    from florist_grpc.fl.strategies import ProximalWeight, ReportingStrategy, build_base_strategy

    use_cpus(cfg.cpus)
    training = cfg.training
    reporter = RedisReporter(cfg.redis_address, cfg.uuid, cfg.redis_username, cfg.redis_password)
    fit_start = datetime.now()
    reporter.report_values(host_type="server", fit_start=str(fit_start))
    model = build_model(cfg.model, cfg.input_shape, cfg.num_classes, cfg.model_config, training.seed)
    state = model.state_dict()
    initial = ndarrays_to_parameters([v.detach().cpu().numpy() for v in state.values()])
    proximal = ProximalWeight(training.fedprox) if training.fedprox is not None else None
    on_round_model: Callable[[int, Parameters], None] | None = None
    if cfg.model_dir:
        saver = ModelSaver(
            Path(cfg.model_dir),
            list(state.keys()),
            cfg.model,
            cfg.input_shape,
            cfg.num_classes,
            cfg.model_config,
            training.checkpoint_rounds,
        )

        def save_round(server_round: int, parameters: Parameters) -> None:
            saver.save(server_round, parameters_to_ndarrays(parameters))

        on_round_model = save_round

    strategy = ReportingStrategy(
        build_base_strategy(cfg.strategy, training, cfg.n_clients, initial, proximal),
        reporter,
        proximal,
        local_epochs=training.local_epochs,
        on_round_model=on_round_model,
        stop_on_divergence=training.stop_on_divergence,
    )
    history = flower_api.start_server(
        cfg.bind_address,
        strategy,
        num_rounds=training.n_server_rounds,
        round_timeout=training.round_timeout_seconds,
        client_wait=training.client_wait_seconds,
        certificates=certificates_of(cfg),
        on_ready=signal_ready,
        clients=cfg.n_clients,
    )
    divergence = strategy.divergence
    rounds_done = int(divergence["round"]) if divergence else len(history.losses_distributed)
    if divergence is None and rounds_done != training.n_server_rounds:
        raise RuntimeError(f"only {rounds_done} of {training.n_server_rounds} rounds completed")
    fit_end = datetime.now()
    reporter.report_values(
        fit_elapsed_time=round((fit_end - fit_start).total_seconds()),
        fit_end=str(fit_end),
        num_rounds=rounds_done,
        host_type="server",
    )
    reporter.report_values(shutdown=now())
    if divergence is not None:
        raise SystemExit(EXIT_DIVERGED)


def certificates_of(cfg: ServerRun) -> tuple[bytes, bytes, bytes] | None:
    """Flower's (CA, certificate chain, key) for a TLS FL server. Clients are not asked for certificates, so the
    CA slot (used only to verify clients) holds the chain itself."""
    if not cfg.tls_cert_file:
        return None
    chain = Path(cfg.tls_cert_file).read_bytes()
    return chain, chain, Path(cfg.tls_key_file).read_bytes()


def main() -> None:
    prepare_process()
    cfg = ServerRun.from_json(take_run_json())
    run_then_exit(lambda: run(cfg), "server")


if __name__ == "__main__":
    main()
