"""Addresses, the loopback rule and free ports: the one place each is defined.

Every `host:port` in the project is parsed here (IPv6 hosts in brackets), every "is this loopback?" question is
answered by `is_loopback`, and every free port is picked by `free_port` (bound at once) or `free_service_port`
(bound later, by a server still starting).
"""

from __future__ import annotations

import ipaddress
import random
import re
import socket
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

LOOPBACK = "127.0.0.1"
# Binding here listens on every interface; connecting to it from this machine goes through loopback.
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]", ""})
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def split_host_port(address: str) -> tuple[str, int]:
    """(host without brackets, port) of `host:port`; raises ValueError if it is not one."""
    problem = address_problem(address)
    if problem is not None:
        raise ValueError(f"{address!r}: {problem}")
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def address_problem(address: str) -> str | None:
    """Why `address` is not a valid host:port (IPv6 hosts in brackets), or None if it is."""
    host, sep, port = address.rpartition(":")
    if not sep or not host:
        return "must be host:port"
    # ASCII and short before int(): "²".isdigit() is true and int() refuses more than 4,300 digits.
    if not (port.isascii() and port.isdigit() and len(port) <= 5) or not 1 <= int(port) <= 65535:
        return "port must be a number from 1 to 65535"
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return "host is not a valid IPv6 address"
        return None
    if not _HOSTNAME.match(host):
        return "host is not a valid hostname or IPv4 address"
    return None


def is_loopback(host: str) -> bool:
    """True for `localhost` and every loopback address (127.0.0.0/8, ::1), with or without brackets."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host in WILDCARD_HOSTS


def bind_address(server_address: str) -> str:
    """Where an FL server listens: a loopback address as given, else every interface on the same port."""
    host, port = split_host_port(server_address)
    return server_address if is_loopback(host) else f"0.0.0.0:{port}"


def local_connect_host(server_address: str) -> str:
    """The host to reach `server_address`'s listener from this machine (loopback when it binds everywhere)."""
    host, _ = split_host_port(server_address)
    return host if is_loopback(host) else LOOPBACK


def redis_address_of(url: str) -> str:
    """host:port of a redis:// URL."""
    parsed = urlparse(url)
    return join_host_port(parsed.hostname or LOOPBACK, parsed.port or 6379)


def free_port(host: str = LOOPBACK) -> int:
    """A port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Below the usual ephemeral range and above most well-known services.
SERVICE_PORTS_FROM = 10_000


def ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands to outgoing connections (and to bind(0))."""
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def free_service_port(host: str = LOOPBACK, attempts: int = 50) -> int:
    """A free port for a server that will bind it later (an FL server that is still starting, Redis restarting).

    `free_port`'s port comes from the ephemeral range, so any outgoing connection made meanwhile may take it:
    with twenty FL servers importing torch at once (seconds before they bind), one was seen to lose its port
    that way. Ports below the ephemeral range are only ever taken by an explicit bind.
    """
    low, _ = ephemeral_range()
    if low - SERVICE_PORTS_FROM >= attempts:
        for _ in range(attempts):
            port = random.randrange(SERVICE_PORTS_FROM, low)
            if port_is_free(port, host):
                return port
    return free_port(host)


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def listen_problem(host: str, port: int) -> str | None:
    """Why a server could not listen on host:port now (another listener, no such address), or None. Binds with
    SO_REUSEADDR, as servers do, so a port left in TIME_WAIT by a process that just ended counts as free."""
    if port == 0:
        return None
    address = join_host_port(host, port)
    try:
        candidates = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"cannot listen on {address}: {exc}"
    for family, kind, protocol, _, where in candidates:
        with socket.socket(family, kind, protocol) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(where)
                s.listen(1)
            except OSError as exc:
                return f"cannot listen on {address}: {exc.strerror or exc}"
    return None


def ports_problem(ports: Sequence[tuple[str, int]]) -> str | None:
    """What is wrong with a server's ports, named by their flags (out of range; two servers on one port; 0 = off
    or pick one, never a clash), or None."""
    for i, (flag, value) in enumerate(ports):
        if not 0 <= value <= 65535:
            return f"{flag} must be 0..65535, not {value}"
        if other := next((f for f, v in ports[:i] if value and v == value), None):
            return f"{flag} {value} is also {other}: give each server a port of its own"
    return None
