"""Agent addresses for relays over TCP: `HOST:PORT` / `[V6]:PORT` parsed, lists split, sockets named."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ADDRESS = re.compile(r"\[(?P<v6>[0-9A-Fa-f:.%]+)\]:(?P<p6>\d{1,5})"
                      r"|(?P<host>[A-Za-z0-9._-]+):(?P<port>\d{1,5})")
_V4_MAPPED = "::ffff:"


class AddressError(ValueError):
    """Not HOST:PORT (or [IPV6]:PORT) with a port from 1 to 65535 (0 only where a listener may pick)."""


@dataclass(frozen=True)
class AgentAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str, *, any_port: bool = False) -> AgentAddress:
    """`HOST:PORT` or `[IPV6]:PORT`; port 0 only with any_port (a listener's "pick one")."""
    found = _ADDRESS.fullmatch(text.strip())
    if found is None:
        raise AddressError(f"{text!r} is not HOST:PORT (or [IPV6]:PORT)")
    host = found["v6"] or found["host"]
    port = int(found["p6"] or found["port"])
    if not (0 if any_port else 1) <= port <= 65535:
        raise AddressError(f"{text!r}: port {port} is out of range")
    return AgentAddress(host, port)


def parse_addresses(text: str) -> tuple[AgentAddress, ...]:
    """A comma (or whitespace) separated list, in order, each once; empty text: none."""
    found: list[AgentAddress] = []
    for item in re.split(r"[,\s]+", text.strip()):
        if item and (address := parse_address(item)) not in found:
            found.append(address)
    return tuple(found)


def socket_name(sockaddr: tuple[object, ...]) -> str:
    """A connected socket's address as both ends name it (the relay's peer, the agent's own end):
    `IP:PORT`, an IPv4-mapped IPv6 address as plain IPv4, other IPv6 as `[IP]:PORT`."""
    host, port = str(sockaddr[0]), int(sockaddr[1])  # type: ignore[call-overload]
    host = host.removeprefix(_V4_MAPPED) if host.startswith(_V4_MAPPED) and "." in host else host
    return str(AgentAddress(host, port))
