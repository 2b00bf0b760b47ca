"""Addresses and the loopback rule, defined once in florist_grpc.net."""

from __future__ import annotations

from pathlib import Path

import pytest

from florist_grpc import net
from florist_grpc.net import (
    SERVICE_PORTS_FROM,
    address_problem,
    bind_address,
    ephemeral_range,
    free_port,
    free_service_port,
    is_loopback,
    local_connect_host,
    port_is_free,
    redis_address_of,
    split_host_port,
)


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("localhost:50051", True),
        ("10.0.0.1:8080", True),
        ("[::1]:9092", True),
        ("a.b-c.example:1", True),
        ("localhost", False),
        (":80", False),
        ("host:0", False),
        ("host:http", False),
        ("bad host:80", False),
        ("[zz::1]:80", False),
    ],
)
def test_addresses_are_host_colon_port(address: str, ok: bool) -> None:
    assert (address_problem(address) is None) is ok


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.5.6.7", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("127.example.com", False),
        ("example.com", False),
    ],
)
def test_one_loopback_rule_for_names_ipv4_and_ipv6(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_fl_servers_bind_loopback_as_given_and_anything_else_on_every_interface() -> None:
    assert bind_address("127.0.0.1:8080") == "127.0.0.1:8080"
    assert bind_address("[::1]:8080") == "[::1]:8080"
    assert bind_address("fl.example.org:8080") == "0.0.0.0:8080"
    assert local_connect_host("fl.example.org:8080") == "127.0.0.1"
    assert local_connect_host("[::1]:8080") == "::1"


def test_split_and_redis_urls() -> None:
    assert split_host_port("[::1]:9") == ("::1", 9)
    with pytest.raises(ValueError, match="host:port"):
        split_host_port("nope")
    assert redis_address_of("redis://127.0.0.1:6390/0") == "127.0.0.1:6390"
    assert redis_address_of("redis://:secret@[::1]:7000") == "[::1]:7000"


def test_a_free_port_is_free_until_someone_binds_it() -> None:
    import socket

    port = free_port()
    assert port_is_free(port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert not port_is_free(port)


def test_a_service_port_is_free_and_below_the_range_outgoing_connections_take_theirs_from() -> None:
    low, high = ephemeral_range()
    assert 1024 <= low < high
    ports = {free_service_port() for _ in range(20)}
    assert all(SERVICE_PORTS_FROM <= p < low and port_is_free(p) for p in ports)
    assert len(ports) > 1  # picked at random: two servers starting at once are unlikely to pick the same


def test_without_room_below_the_ephemeral_range_a_service_port_is_any_free_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    squeezed = tmp_path / "ip_local_port_range"
    squeezed.write_text("10010\t60999\n")
    monkeypatch.setattr(net, "EPHEMERAL_RANGE_FILE", squeezed)
    assert ephemeral_range() == (10010, 60999)
    port = free_service_port()
    assert port >= 10010 and port_is_free(port)
