"""Certificates that renew: the control plane serves a renewed certificate to new connections while an agent's
session and a running job stay up; a renewal caught half written keeps the old certificate with one error; an
agent reads its renewed CA and redials with it. Real TLS (testing/certificates.py), a real agent process."""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import ssl
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from florist_grpc.config import TLSConfig
from florist_grpc.domain.model import JobState
from florist_grpc.net import free_service_port
from florist_grpc.proto.florist.v1 import agent_service_pb2 as agent_pb
from florist_grpc.proto.florist.v1 import agent_service_pb2_grpc as agent_grpc
from florist_grpc.testing.certificates import Pki, issue_pki, renew_server
from florist_grpc.testing.plane import TEST_TIMEOUTS, ControlPlaneThread, wait_for
from florist_grpc.testing.simulation import create_running
from tests.e2e.sites import start_agent

FAST = replace(TEST_TIMEOUTS, file_reload_seconds=0.1)


def served_serial(port: int) -> int:
    """The serial number of the certificate a new TLS connection to `port` is served."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def serial_of(pem: Path) -> int:
    return x509.load_pem_x509_certificate(pem.read_bytes()).serial_number


def agents(port: int, ca: Path) -> list[agent_pb.AgentInfo]:
    with grpc.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(ca.read_bytes())) as channel:
        stub = agent_grpc.AgentServiceStub(channel)
        return list(stub.ListAgents(agent_pb.ListAgentsRequest(), timeout=10).agents)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    directory = tmp_path / "pki"
    directory.mkdir()
    return issue_pki(directory)


def test_a_renewed_certificate_is_served_while_a_session_and_a_job_stay_up(
    tmp_path: Path, pki: Pki, site_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", tls=TLSConfig(pki.cert, pki.key), timeouts=FAST)
    port = plane.plane.port
    agent = start_agent(plane.address, "site-a", site_root, "--tls-ca", str(pki.ca))
    try:
        job = create_running(plane.plane, n_clients=1)
        (before,) = agents(port, pki.ca)
        first = served_serial(port)
        assert first == serial_of(pki.cert)
        caplog.set_level(logging.INFO, "florist_grpc.reloading")

        pki.cert.write_text("-----BEGIN CERTIFICATE-----\nhalf written")  # a renewal caught mid-write
        wait_for(lambda: "not reloaded" in caplog.text, 10, "the error")
        assert served_serial(port) == first  # the old certificate stays in use

        renewed = renew_server(pki)
        wait_for(lambda: served_serial(port) == renewed, 10, "the renewed certificate to be served")
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and str(pki.cert) in errors[0].getMessage(), [r.getMessage() for r in errors]

        (after,) = agents(port, pki.ca)  # a new connection, on the renewed certificate
        assert after.connected and after.connect_time == before.connect_time  # the same session, never dropped
        assert plane.plane.store.get_job(job.job_id).state is JobState.IN_PROGRESS  # type: ignore[union-attr]
        assert agent.process.poll() is None
    finally:
        assert agent.stop() == 0
        plane.stop()


def test_an_agent_redials_with_its_renewed_ca(tmp_path: Path, pki: Pki, site_root: Path) -> None:
    """The control plane moves to a certificate of a new CA; the site renews its --tls-ca file (SIGHUP: read at
    once; a half-written one is refused and the old one kept). Its open session is not dropped for it, and its next
    dial trusts the new CA, without a restart."""
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", tls=TLSConfig(pki.cert, pki.key), timeouts=FAST)
    port = plane.plane.port
    site_ca = tmp_path / "site-ca.pem"
    shutil.copy(pki.ca, site_ca)
    agent = start_agent(plane.address, "site-a", site_root, "--tls-ca", str(site_ca))
    try:
        other_dir = tmp_path / "pki2"
        other_dir.mkdir()
        other = issue_pki(other_dir)
        shutil.copy(other.cert, pki.cert)  # the control plane's new certificate, from another CA
        shutil.copy(other.key, pki.key)
        wait_for(lambda: served_serial(port) == serial_of(other.cert), 10, "the new certificate")
        (info,) = agents(port, other.ca)
        assert info.connected  # the session opened under the old CA is still up
        agent_log = site_root.parent / "site-a-agent.log"
        site_ca.write_text("-----BEGIN CERTIFICATE-----\nhalf written")  # the site's renewal, caught mid-write
        agent.process.send_signal(signal.SIGHUP)  # read now, not at the next look
        wait_for(lambda: "not reloaded" in agent_log.read_text(), 10, "the agent to refuse its broken CA file")
        shutil.copy(other.ca, site_ca)  # the site's renewal, complete
        agent.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in agent_log.read_text().rsplit("not reloaded", 1)[-1], 10, "the renewed CA")
        plane.stop()  # the session ends; the agent redials the restarted control plane with what it read
        plane = ControlPlaneThread.in_dir(
            tmp_path / "florist", tls=TLSConfig(pki.cert, pki.key), timeouts=FAST, port=port
        )
        agent.wait_line(f"florist-grpc agent site-a connected to {plane.address}", 60)
    finally:
        assert agent.stop() == 0
        plane.stop()


def test_the_dashboard_serves_the_renewed_certificate_too(tmp_path: Path, pki: Pki) -> None:
    """The browser port speaks HTTPS with the gRPC port's certificate (tests/web): renewed, both serve the new one."""
    http_port = free_service_port()
    plane = ControlPlaneThread.in_dir(
        tmp_path / "florist", tls=TLSConfig(pki.cert, pki.key), http_port=http_port, launcher_pool=False, timeouts=FAST
    )
    try:
        assert served_serial(http_port) == serial_of(pki.cert)
        renewed = renew_server(pki)
        wait_for(lambda: served_serial(plane.plane.port) == renewed, 10, "the renewed certificate on the gRPC port")
        wait_for(lambda: served_serial(http_port) == renewed, 10, "the renewed certificate on the dashboard's port")
    finally:
        plane.stop()
