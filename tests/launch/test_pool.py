"""The launcher pool: forked FL processes are what spawned ones are (own session, own log, (pid, create_time),
exit code known), outlive the pool, say "ready" by event; a dead pool means spawning, and a new pool."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from florist_grpc.config import Timeouts
from florist_grpc.domain.model import Exit
from florist_grpc.fl.run_config import run_environment
from florist_grpc.launch import handles
from florist_grpc.launch.handles import LocalProcess, start_local
from florist_grpc.launch.launcher import LaunchSpec, LocalLauncher
from florist_grpc.launch.pool import LauncherPool, LaunchRequest
from florist_grpc.launch.probe import ProbeFailed, probe_files
from tests.helpers import wait_for

SAMPLE = "tests.launch.sample_process"


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LauncherPool]:
    started = LauncherPool(tmp_path_factory.mktemp("pool") / "pool.log", Timeouts(), extra_launchable=SAMPLE)
    started.start()
    assert started.wait_ready(120), "the pool imports torch and Flower, then says hello"
    yield started
    started.stop()


@pytest.fixture
def installed(pool: LauncherPool, monkeypatch: pytest.MonkeyPatch) -> LauncherPool:
    monkeypatch.setitem(handles.FL_MODULES, "sample", SAMPLE)
    return pool


def launch(tmp_path: Path, name: str, pool: LauncherPool | None, **plan: object) -> LocalProcess:
    return start_local("sample", json.dumps(plan), tmp_path / f"{name}.log", pool)


def test_a_forked_process_has_its_own_session_and_log_and_its_exit_code_is_reported(
    installed: LauncherPool, tmp_path: Path
) -> None:
    process = launch(tmp_path, "a", installed, print="hello", ready=True, wait=True, exit=3)
    # Still running (it waits for SIGUSR1): its identity is checked against the live process, then it exits.
    assert asyncio.run(process.wait_ready()) is True
    assert process.ref.create_time == pytest.approx(psutil.Process(process.ref.pid).create_time(), abs=0.01)
    os.kill(process.ref.pid, signal.SIGUSR1)
    assert process.wait_exit(30) == Exit(3)
    log = Path(process.ref.log_path).read_text()
    assert f"hello session={process.ref.pid} pid={process.ref.pid} env=" in log  # leads its own session
    assert Path(process.ref.log_path + ".exit").exists()  # the code outlives whoever asked for the process


def test_a_forked_process_is_signalled_by_group_and_its_signal_is_reported(
    installed: LauncherPool, tmp_path: Path
) -> None:
    process = launch(tmp_path, "b", installed, ready=True, wait=True)
    assert asyncio.run(process.wait_ready()) is True
    assert process.poll() is None
    cmdline = " ".join(psutil.Process(process.ref.pid).cmdline())
    assert SAMPLE in cmdline  # found by its command line, as a spawned process is (its run is not on it)
    process.kill()
    assert process.wait_exit(30) == Exit(-signal.SIGKILL)


def test_a_process_that_ends_before_saying_ready_is_not_ready(installed: LauncherPool, tmp_path: Path) -> None:
    process = launch(tmp_path, "c", installed, exit=1)
    assert asyncio.run(process.wait_ready()) is False
    assert process.wait_exit(30) == Exit(1)


def test_without_a_pool_processes_are_spawned_and_readiness_is_still_an_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(handles.FL_MODULES, "sample", SAMPLE)
    ready = launch(tmp_path, "d", None, ready=True, wait=True)
    ended = launch(tmp_path, "e", None, exit=4)
    assert asyncio.run(ready.wait_ready()) is True
    assert asyncio.run(ended.wait_ready()) is False
    assert ended.wait_exit(30) == Exit(4)
    ready.terminate()
    assert ready.wait_exit(30) == Exit(-signal.SIGTERM)


def test_children_outlive_the_pool_and_a_dead_pool_means_spawning_and_a_new_pool(
    installed: LauncherPool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    survivor = launch(tmp_path, "f", installed, ready=True, wait=True)
    assert asyncio.run(survivor.wait_ready()) is True
    old_pool = installed.pid
    assert old_pool is not None
    os.kill(old_pool, signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(old_pool) or psutil.Process(old_pool).status() == "zombie", 10, "pool gone")
    assert survivor.poll() is None  # its own session: the pool's death is not its own

    spawned = launch(tmp_path, "g", installed, exit=0)
    assert "spawning" in caplog.text and spawned.wait_exit(30) == Exit(0)

    assert installed.wait_ready(120) and installed.pid != old_pool  # restarted
    forked = launch(tmp_path, "h", installed, exit=5)
    assert forked.wait_exit(30) == Exit(5)

    survivor.terminate()
    # Its reaper died with the old pool: the exit is seen, its code unknown, and the reason says so (no restart of
    # the control plane happened, and none is blamed).
    ended = wait_for(survivor.poll, 10, "the survivor to end")
    assert ended.code is None
    assert ended.describe() == "ended (exit code unknown: the launcher pool that forked it died)"


def test_a_pool_that_dies_while_importing_is_not_waited_for(tmp_path: Path) -> None:
    pool = LauncherPool(tmp_path / "pool.log", Timeouts())
    pool.start()
    assert pool.pid is not None
    os.kill(pool.pid, signal.SIGKILL)
    # Returns once the pool is gone, not after the bound (the suite's own timeout is shorter than this one).
    assert pool.wait_ready(600) is False
    pool.stop()


def test_a_launch_adds_to_the_childs_environment_only(pool: LauncherPool, tmp_path: Path) -> None:
    env = {"FLORIST_SAMPLE": "secret", **run_environment(json.dumps({"print": "x"}))}
    child = pool.launch(SAMPLE, [], tmp_path / "env.log", env=env)
    assert child.wait_exit(30) == Exit(0)
    assert "env=secret" in (tmp_path / "env.log").read_text()
    again = pool.launch(SAMPLE, [], tmp_path / "env2.log", env=run_environment(json.dumps({"print": "y"})))
    assert again.wait_exit(30) == Exit(0)
    assert "env=\n" in (tmp_path / "env2.log").read_text()  # the pool's own environment is untouched


def test_data_is_probed_in_a_child_of_the_pool_with_the_same_summaries_as_a_spawned_probe(
    pool: LauncherPool, tmp_path: Path
) -> None:
    import numpy as np

    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    np.savez(good, x=np.zeros((5, 3), dtype=np.float32), y=np.array([0, 1, 0, 1, 2]))
    bad.write_bytes(b"not an npz")
    files = [(str(good), ""), (str(bad), "")]
    forked = probe_files(files, 60, pool)
    assert forked == probe_files(files, 60)  # spawned: the same summaries
    assert forked[0]["n"] == 5 and forked[0]["input_shape"] == [3] and forked[0]["label_max"] == 2
    assert forked[1]["problems"] and forked[1]["n"] is None


def test_a_probe_stuck_on_its_data_is_a_child_of_the_pool_and_is_killed_at_the_timeout(
    pool: LauncherPool, tmp_path: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # A data file the probe hangs on (a hung network mount): a FIFO would be refused by its kind before it is
    # opened, so the probe is stopped (SIGSTOP) once it runs, on a CSV long enough to be seen running.
    stuck = tmp_path / "stuck.csv"
    stuck.write_text("a,b,label\n" + "0.5,0.25,1\n" * 1_000_000)

    def probes() -> list[psutil.Process]:
        found = []
        for child in psutil.Process(pool.pid).children():
            with contextlib.suppress(psutil.Error):  # one that ends meanwhile is not a probe still running
                if child.status() != psutil.STATUS_ZOMBIE and str(stuck) in " ".join(child.cmdline()):
                    found.append(child)
        return found

    with ThreadPoolExecutor(1) as executor:
        outcome = executor.submit(probe_files, [(str(stuck), "label")], 5, pool)
        (probe,) = wait_for(probes, 5, "the probe to run as a child of the launcher pool")
        probe.suspend()
        with pytest.raises(ProbeFailed, match="took longer than 5s"):
            outcome.result(30)
    assert wait_for(lambda: not probes(), 10)


def test_a_forked_client_imports_nothing_heavy_in_its_first_round(pool: LauncherPool, tmp_path: Path) -> None:
    # torch.optim imports torch._dynamo (and sympy) when the first optimizer is built: 1.5 s and ~100 MiB of
    # private pages in every client, unless the pool has imported it already.
    child = pool.launch(SAMPLE, [], tmp_path / "train.log", env=run_environment(json.dumps({"train": True})))
    assert child.wait_exit(60) == Exit(0), (tmp_path / "train.log").read_text()
    line = next(x for x in (tmp_path / "train.log").read_text().splitlines() if x.startswith("imported="))
    imported = {m for m in line.removeprefix("imported=").split(",") if m}
    heavy = {m for m in imported if m.split(".")[0] in ("sympy", "mpmath") or m.startswith("torch._dynamo")}
    assert not heavy, sorted(heavy)[:10]
    assert len(imported) < 20, sorted(imported)


def test_a_forked_child_starts_with_a_client_rounds_code_already_run_by_the_pool(
    pool: LauncherPool, tmp_path: Path
) -> None:
    # Run first in each child, that code would write (and so copy) the pool's pages holding it (fl/warm_up.py).
    child = pool.launch(SAMPLE, [], tmp_path / "warm.log", env=run_environment(json.dumps({"warm": True})))
    assert child.wait_exit(60) == Exit(0), (tmp_path / "warm.log").read_text()
    assert "warm=True" in (tmp_path / "warm.log").read_text().splitlines()


def test_many_launches_in_one_request_each_get_their_own_child_log_and_exit(pool: LauncherPool, tmp_path: Path) -> None:
    requests = [
        LaunchRequest(SAMPLE, [], tmp_path / f"many{i}.log", run_environment(json.dumps({"print": f"n{i}", "exit": i})))
        for i in range(4)
    ]
    children = [pool.await_child(future) for future in pool.submit(requests)]
    assert len({c.ref.pid for c in children}) == 4
    for i, child in enumerate(children):
        assert child.ref.log_path == str(tmp_path / f"many{i}.log")
        assert child.wait_exit(60) == Exit(i)
        assert (tmp_path / f"many{i}.log").read_text().startswith(f"n{i} ")


def test_launches_left_when_a_start_stops_taking_them_are_killed(installed: LauncherPool, tmp_path: Path) -> None:
    waiting = json.dumps({"ready": True, "wait": True})
    specs = [LaunchSpec("j", f"client{i}", "sample", waiting, tmp_path / f"left{i}.log") for i in range(3)]

    async def take_one() -> LocalProcess:
        async with contextlib.aclosing(LocalLauncher(installed).launch_many("sample", specs)) as started:
            return await anext(started)  # then the start fails: the generator closes

    def children() -> set[int]:
        assert installed.pid is not None
        return {p.pid for p in psutil.Process(installed.pid).children() if p.status() != psutil.STATUS_ZOMBIE}

    before = children()
    taken = asyncio.run(take_one())
    try:
        assert taken.poll() is None  # the caller's: left running
        assert wait_for(lambda: children() - before == {taken.ref.pid}, 30), children() - before
        # Both were forked, then killed: the pool reaped them and wrote why they ended beside their logs.
        for i in (1, 2):
            exit_file = tmp_path / f"left{i}.log.exit"
            assert wait_for(exit_file.exists, 30), exit_file
            assert json.loads(exit_file.read_text())["code"] == -signal.SIGKILL
    finally:
        taken.kill()


def test_a_forked_process_is_polled_from_its_pools_reports_not_from_proc(
    installed: LauncherPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The process watcher polls every process at each exit: at 100 clients, 10,000 reads of /proc at their ends.
    child = launch(tmp_path, "polled", installed, ready=True, wait=True)
    assert asyncio.run(child.wait_ready())

    def no_proc(ref: object) -> None:
        raise AssertionError("read /proc")

    monkeypatch.setattr(handles.process, "find", no_proc)
    assert child.poll() is None
    os.kill(child.ref.pid, signal.SIGUSR1)
    assert wait_for(lambda: child.poll() is not None, 30)
    assert child.poll() == Exit(0)


def test_a_pool_whose_warm_up_fails_still_says_hello_and_forks() -> None:
    # The warm-up (fl/warm_up.py) only saves children copying pages: a failure of it must not cost the pool.
    broken = (
        "import florist_grpc.fl.warm_up as w\n"
        "def fail(): raise RuntimeError('no warm-up here')\n"
        "w.warm_up = fail\n"
        "from florist_grpc.launch.pool_process import main\n"
        "main()\n"
    )
    pool = subprocess.Popen(
        [sys.executable, "-c", broken], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert pool.stdout is not None and pool.stdin is not None
        assert json.loads(pool.stdout.readline()) == {"hello": pool.pid}
        pool.stdin.close()  # no launches: the pool ends
        assert pool.wait(30) == 0
        assert pool.stderr is not None
        said = pool.stderr.read().decode()
        assert "RuntimeError: no warm-up here" in said and "forking without it" in said
    finally:
        pool.kill()
        pool.wait()


def test_poll_now_sees_a_killed_forked_process_at_once_without_waiting_for_the_watcher(
    installed: LauncherPool, tmp_path: Path
) -> None:
    # The follower asks, when a client fails, whether its server is gone too: the answer cannot wait for the pool's
    # report, which comes in the order the pool reaps its children (a killed server's clients may come first).
    child = launch(tmp_path, "now", installed, ready=True, wait=True)
    assert asyncio.run(child.wait_ready())
    assert child.poll_now() is None  # running
    os.kill(child.ref.pid, signal.SIGKILL)
    assert wait_for(lambda: not psutil.pid_exists(child.ref.pid) or psutil.Process(child.ref.pid).status() == "zombie")
    assert child.poll_now() == Exit(-signal.SIGKILL)


@pytest.mark.parametrize("cut_at", ["one", "batch", "second of a batch"])
def test_a_launch_cut_by_a_shutdown_kills_what_its_thread_started(
    installed: LauncherPool, tmp_path: Path, cut_at: str
) -> None:
    # A blocking launch runs on a thread that a cancelled caller cannot stop: what it starts must not run on unknown.
    waiting = json.dumps({"ready": True, "wait": True})
    specs = [LaunchSpec("j", f"client{i}", "sample", waiting, tmp_path / f"cut{i}.log") for i in range(3)]
    launcher = LocalLauncher(installed)
    taken: list[LocalProcess] = []

    async def cut() -> None:
        if cut_at == "one":
            launching = asyncio.ensure_future(launcher.launch(specs[0]))
        else:
            batch = launcher.launch_many("sample", specs)
            if cut_at == "second of a batch":
                taken.append(await anext(batch))  # the caller's from here on: it stays up
            launching = asyncio.ensure_future(anext(batch))
        await asyncio.sleep(0)  # a turn of the loop: the launch is now waiting on its thread
        launching.cancel()
        with pytest.raises(asyncio.CancelledError):
            await launching
        # The loop goes on, as a control plane's does while it shuts down: the thread finishes, then is undone.
        assert await asyncio.to_thread(wait_for, lambda: all(f.exists() for f in exit_files), 30), exit_files

    cut_specs = {"one": specs[:1], "batch": specs, "second of a batch": specs[1:]}[cut_at]
    exit_files = [spec.log_path.with_name(spec.log_path.name + ".exit") for spec in cut_specs]
    asyncio.run(cut())
    try:
        for exit_file in exit_files:
            assert json.loads(exit_file.read_text())["code"] == -signal.SIGKILL
        assert all(process.poll() is None for process in taken)
    finally:
        for process in taken:
            process.kill()
