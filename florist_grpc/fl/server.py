"""The FL server process: `python -m florist_grpc.fl.server RUN_JSON`.

Exit code 0 only when every round ran; the control plane then also requires fit_end in the report.
"""

from __future__ import annotations

import logging
import sys

from florist_grpc.fl.process import prepare_process
from florist_grpc.fl.run_config import ServerRun

log = logging.getLogger("florist.fl.server")


def run(cfg: ServerRun) -> None:
    from flwr.common import ndarrays_to_parameters

    from florist_grpc.fl import flower_api
    from florist_grpc.fl.models import build_model
    from florist_grpc.fl.readiness import signal_ready
    from florist_grpc.fl.reporter import RedisReporter, now
    from florist_grpc.fl.strategies import ProximalWeight, ReportingStrategy, build_base_strategy

    config = cfg.server_config
    reporter = RedisReporter(cfg.redis_address, cfg.uuid)
    reporter.report_values(host_type="server", fit_start=now())
    model = build_model(cfg.model, seed=int(config.get("seed", 0)))
    initial = ndarrays_to_parameters([v.detach().cpu().numpy() for v in model.state_dict().values()])
    proximal = ProximalWeight(config) if cfg.strategy == "FEDPROX" else None
    strategy = ReportingStrategy(
        build_base_strategy(cfg.strategy, config, cfg.n_clients, initial, proximal), reporter, proximal
    )
    history = flower_api.start_server(
        cfg.bind_address,
        strategy,
        num_rounds=int(config["n_server_rounds"]),
        round_timeout=float(config.get("round_timeout_seconds", 300.0)),
        client_wait=float(config.get("client_wait_seconds", 60.0)),
        on_ready=signal_ready,
    )
    rounds_done = len(history.losses_distributed)
    if rounds_done != int(config["n_server_rounds"]):
        raise RuntimeError(f"only {rounds_done} of {config['n_server_rounds']} rounds completed")
    reporter.report_values(fit_end=now())
    reporter.report_values(shutdown=now())


def main() -> None:
    prepare_process()
    cfg = ServerRun.from_json(sys.argv[1])
    try:
        run(cfg)
    except Exception as exc:
        log.error("FL server failed: %s", exc, exc_info=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
