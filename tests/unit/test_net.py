"""Addresses and the loopback rule, defined once in florist_grpc.net."""

from __future__ import annotations

import pytest

from florist_grpc.net import (
    address_problem,
    bind_address,
    free_port,
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
