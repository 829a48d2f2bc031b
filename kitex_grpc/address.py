"""Parsing ``host:port`` addresses once, with errors that name the option."""

from __future__ import annotations


def parse_address(option: str, address: str, *, allow_port_zero: bool = False) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6; an empty host means every interface).

    Raises ``ValueError`` naming ``option`` when the address cannot be used.
    """
    if not isinstance(address, str) or not address:
        raise ValueError(f"{option}: address must be a non-empty 'host:port' string, got {address!r}")
    host, sep, port_text = address.rpartition(":")
    if not sep:
        raise ValueError(f"{option}: address {address!r} has no port; expected 'host:port'")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"{option}: unbalanced brackets in address {address!r}")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{option}: IPv6 address {address!r} must be written as '[addr]:port'")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{option}: port {port_text!r} in {address!r} is not a number") from None
    low = 0 if allow_port_zero else 1
    if not low <= port <= 65535:
        raise ValueError(f"{option}: port {port} in {address!r} is out of range {low}..65535")
    if any(c.isspace() for c in host):
        raise ValueError(f"{option}: host in {address!r} contains white space")
    return host, port


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_host_ports(option: str, addresses: tuple[str, ...] | list[str]) -> None:
    """Refuse an empty list and any ``host:port`` without a host, naming ``option``."""
    if not addresses:
        raise ValueError(f"{option}: give at least one 'host:port'")
    for address in addresses:
        host, _ = parse_address(option, address)
        if not host:
            raise ValueError(f"{option}: address {address!r} has no host")
