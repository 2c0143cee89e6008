"""Where a webhook may be sent: not to the service's own machine, its network or the cloud's metadata endpoint
(loopback, link-local, private and other special ranges) unless an operator allows it
(GOVFLOW_WEBHOOK_ALLOW_PRIVATE: `*`, or a comma-separated list of networks and host names). Checked when a
subscription is made, and again when each delivery is sent, on the addresses the name resolves to then; the
delivery connects to the address that was checked."""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(ValueError):
    pass


@dataclass(frozen=True)
class Allowance:
    everything: bool = False
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str | None) -> Allowance:
        text = (text or "").strip()
        if text.lower() in ("*", "true", "all"):
            return cls(everything=True)
        networks, hosts = [], set()
        for item in (t.strip() for t in text.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.lower().rstrip("."))
        return cls(False, tuple(networks), frozenset(hosts))

    def allows(self, host: str, address: IPAddress) -> bool:
        return self.everything or host in self.hosts or any(address in n for n in self.networks)


def _special(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (address.is_private or address.is_loopback or address.is_link_local or address.is_reserved
            or address.is_multicast or address.is_unspecified or not address.is_global)


def check_url(url: str, allowance: Allowance) -> tuple[str, int, str]:
    """(host, port, scheme) of an acceptable URL; literal addresses are judged here, names when sending."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("must be an http(s) URL with a host")
    if parts.username or parts.password:
        raise TargetRefused("must not carry a user name or password")
    host = parts.hostname.lower().rstrip(".")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TargetRefused("has an invalid port") from None
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and _special(literal) and not allowance.allows(host, literal):
        raise TargetRefused(f"points at {literal}, a loopback, link-local or private address")
    if literal is None and (host == "localhost" or host.endswith(".localhost")) and not allowance.everything \
            and host not in allowance.hosts:
        raise TargetRefused("points at this machine")
    return host, port, parts.scheme


def pinned(url: str, allowance: Allowance) -> tuple[str, str, str]:
    """Resolve the URL's host now, check every address, and return (URL to connect to, with the checked
    address; the Host header; the TLS server name)."""
    host, port, scheme = check_url(url, allowance)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise TargetRefused(f"cannot resolve {host}: {e}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        if _special(address) and not allowance.allows(host, address):
            raise TargetRefused(f"{host} resolves to {address}, a loopback, link-local or private address")
    chosen = addresses[0]
    parts = urlsplit(url)
    shown = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    netloc = f"{shown}:{parts.port}" if parts.port else shown
    host_header = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), host_header, host
