"""What the Slurm launcher asks of Slurm and how it reads Slurm's answers (launch/slurm/commands.py): pure, no
cluster needed. tests/slurm runs them against a real one."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from florist_grpc.domain.resources import Resources
from florist_grpc.launch.slurm.commands import (
    SlurmJob,
    batch_script,
    exit_of,
    job_name,
    parse_jobs,
    parse_sbatch,
    sbatch_options,
    scancel_command,
    time_option,
)
from florist_grpc.launcher_config import LauncherSettings

SLURM = LauncherSettings("slurm", "gpu", "lab-a", ("--qos=high",), Path("/shared"))


def test_each_fl_process_is_a_slurm_job_named_after_its_job_and_process() -> None:
    assert job_name("0f3a", "server") == "florist-0f3a-server"
    assert job_name("0f3a", "client1") == "florist-0f3a-client1"


def test_sbatch_options_without_resources_ask_only_for_what_supervision_needs() -> None:
    options = sbatch_options(
        "florist-j-server", "/shared/jobs/j/server.log", "server", Resources(), LauncherSettings(), "/w"
    )
    assert options == [
        "sbatch",
        "--parsable",
        "--job-name=florist-j-server",
        "--output=/shared/jobs/j/server.log",
        "--open-mode=append",
        "--no-requeue",
        "--ntasks=1",
        "--chdir=/w",
    ]


def test_resources_become_sbatch_options_gpus_for_clients_only() -> None:
    resources = Resources(cpus=4, memory_mib=2048, gpus=2, time_limit_seconds=90061)
    client = sbatch_options("n", "/l", "client", resources, SLURM, "/w")
    server = sbatch_options("n", "/l", "server", resources, SLURM, "/w")
    expected = ["--partition=gpu", "--account=lab-a", "--cpus-per-task=4", "--mem=2048M"]
    assert client[8:] == [*expected, "--gres=gpu:2", "--time=1-01:01:01", "--qos=high"]
    assert server[8:] == [*expected, "--time=1-01:01:01", "--qos=high"]  # the server aggregates on CPU


@pytest.mark.parametrize(
    ("seconds", "option"), [(60, "0-00:01:00"), (59, "0-00:00:59"), (86400 * 3 + 7200, "3-02:00:00")]
)
def test_time_limits_are_days_hours_minutes_seconds(seconds: int, option: str) -> None:
    assert time_option(seconds) == option


def test_the_script_execs_the_fl_process_so_scancel_signals_it_not_a_shell() -> None:
    assert batch_script("/opt/venv/bin/python", "florist_grpc.fl.client") == (
        "#!/bin/sh\nexec /opt/venv/bin/python -m florist_grpc.fl.client\n"
    )
    assert "exec '/my dir/python'" in batch_script("/my dir/python", "m")


def test_sbatch_parsable_output_is_read_with_or_without_a_cluster() -> None:
    assert parse_sbatch("42\n") == "42"
    assert parse_sbatch("43;cluster-a\n") == "43"
    with pytest.raises(ValueError, match="no job id"):
        parse_sbatch("sbatch: error: Batch job submission failed\n")


SCONTROL = (
    "JobId=7 JobName=florist-j-server UserId=root(0) JobState=RUNNING Reason=None Dependency=(null) "
    "ExitCode=0:0 BatchHost=n1 NumNodes=1\n"
    "JobId=8 JobName=florist-j-client0 JobState=FAILED Reason=NonZeroExitCode ExitCode=3:0 BatchHost=n2\n"
)


def test_scontrol_one_line_per_job_is_read_by_job_id() -> None:
    jobs = parse_jobs(SCONTROL)
    assert jobs["7"] == SlurmJob("7", "florist-j-server", "RUNNING", "0:0", "None", "n1")
    assert jobs["8"].state == "FAILED" and jobs["8"].exit_code == "3:0"
    assert parse_jobs("No jobs in the system\n") == {}


@pytest.mark.parametrize("state", ["PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED"])
def test_a_job_that_may_still_run_has_no_exit(state: str) -> None:
    # COMPLETING: its processes are being ended; the FL job waits, so nothing is left in Slurm once it ends.
    assert exit_of(SlurmJob("1", "n", state)) is None


def test_a_completed_job_exited_cleanly() -> None:
    status = exit_of(SlurmJob("1", "n", "COMPLETED"))
    assert status is not None and status.clean


def test_a_failed_job_keeps_its_exit_code_and_slurms_reason() -> None:
    status = exit_of(SlurmJob("8", "n", "FAILED", "3:0", "NonZeroExitCode"))
    assert status is not None and status.code == 3
    assert status.describe() == "exited with code 3 (Slurm job 8 FAILED, reason NonZeroExitCode, exit code 3:0)"
    killed = exit_of(SlurmJob("9", "n", "FAILED", "0:9"))
    assert killed is not None and killed.code == -9


@pytest.mark.parametrize(
    ("state", "says", "signum"),
    [
        ("CANCELLED", "was cancelled in Slurm (Slurm job 5 CANCELLED", signal.SIGTERM),
        ("TIMEOUT", "ran past its Slurm time limit (Slurm job 5 TIMEOUT", signal.SIGTERM),
        ("NODE_FAIL", "was lost with its Slurm node (Slurm job 5 NODE_FAIL", signal.SIGKILL),
        ("OUT_OF_MEMORY", "ran out of memory (Slurm OUT_OF_MEMORY) (Slurm job 5 OUT_OF_MEMORY", signal.SIGKILL),
    ],
)
def test_a_job_slurm_ended_counts_as_killed_and_names_slurms_state(state: str, says: str, signum: int) -> None:
    # Killed (a negative code): the ending policy names such a client as why its job failed (jobs/ending.py).
    status = exit_of(SlurmJob("5", "n", state, "0:15", "None"))
    assert status is not None and status.code == -signum and status.describe().startswith(says)


def test_scancel_terminates_then_kills_the_batch_process() -> None:
    assert scancel_command(["7", "8"]) == ["scancel", "7", "8"]
    assert scancel_command(["7"], kill=True) == ["scancel", "--full", "--signal=KILL", "7"]
