"""A model from an installed plugin package: in the catalog with its source, validated, trained, downloaded."""

from __future__ import annotations

import importlib
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from safetensors.torch import load_file

from florist_grpc.cli.models import download_model
from florist_grpc.proto.florist.v1 import catalog_service_pb2, catalog_service_pb2_grpc, job_pb2
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import job_message, no_fl_process_left

PLUGIN_SOURCE = Path(__file__).resolve().parent.parent / "plugin_pkg"


@pytest.fixture(scope="module")
def tiny_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """tests/plugin_pkg installed into this venv (a copy: the build leaves files beside the sources)."""
    source = tmp_path_factory.mktemp("plugin") / "plugin_pkg"
    shutil.copytree(PLUGIN_SOURCE, source)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", str(source)], check=True, timeout=300)
    importlib.invalidate_caches()
    try:
        yield "florist-tiny-models==0.1.0"
    finally:
        subprocess.run([*pip, "uninstall", "--yes", "florist-tiny-models"], check=True, timeout=120)
        importlib.invalidate_caches()


def test_a_plugin_model_is_listed_validated_trained_and_downloaded(
    tiny_plugin: str, tmp_path: Path, demo_data: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="florist_grpc.launch.plugins")
    plane = ControlPlaneThread.in_dir(tmp_path / "florist")
    try:
        catalog = catalog_service_pb2_grpc.CatalogServiceStub(plane.channel).GetCatalog(
            catalog_service_pb2.GetCatalogRequest(), timeout=30
        )
        models = {m.name: m for m in catalog.models}
        assert "BROKEN_NET" not in models and {"MLP", "CNN", "MNIST_CNN"} <= set(models)
        tiny = models["TINY_NET"]
        assert (
            tiny.source == tiny_plugin
            and tiny.description == "Tiny two-layer net from a plugin package, any sample shape."
        )
        assert list(tiny.input_shape) == [] and tiny.num_classes == 0
        assert set(tiny.config_schema["properties"]) == {"width"}
        assert any("BROKEN_NET" in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)

        message = job_message(demo_data, rounds=1)
        message.model = "TINY_NET"
        message.model_config.update({"width": 0})
        with pytest.raises(grpc.RpcError) as raised:
            plane.create(message)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "job.model_config.width" in (raised.value.details() or "")

        message.model_config.update({"width": 5})
        job = plane.create(message)
        plane.start(job.id)
        assert plane.events(job.id)[-1].job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, plane.get(job.id)
        out = tmp_path / "tiny.safetensors"
        artifact = download_model(plane.channel, (), job.id, 0, out)
        assert artifact.model == "TINY_NET" and dict(artifact.model_config) == {"width": 5}
        tensors = load_file(str(out))
        assert tensors["1.weight"].shape == (5, 20) and tensors["3.weight"].shape == (4, 5)  # sized by the data
        no_fl_process_left()
    finally:
        plane.stop()
