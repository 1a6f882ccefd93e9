"""Where a webhook may connect: public addresses over https, and nothing else unless allow-listed.

    allow = AllowList.parse("127.0.0.0/8, hooks.intern.example")   # SAMBAND_WEBHOOK_ALLOW_NETWORKS
    allow.refusal("http", "10.0.0.7")     # -> "a private address" (why it is refused), or None

A subscription's URL is the tenant's to choose, so the bus must not become a way into the
networks it runs in (SSRF): loopback, private, link-local (cloud metadata at 169.254.169.254),
unique-local, multicast, unspecified and reserved addresses are refused, and so is an IPv6
address carrying one of them as IPv4 (mapped, compatible, 6to4, NAT64), and so is plain http.
The check runs on every address a name resolves to, when the connection is made
(`GuardedResolver`), so a name that resolves to a public address at write time and to an
internal one later (DNS rebinding) is still refused. Hosts and networks in the allow-list may
be reached over http and on any address: tests and the demo allow 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(OSError):
    """A webhook host resolved to an address it may not reach; the message names why, not the address."""


@dataclass(frozen=True)
class AllowList:
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> AllowList:
        """Comma-separated hosts and CIDRs; ValueError names an entry that is neither."""
        networks, hosts = [], set()
        for entry in filter(None, (part.strip() for part in text.split(","))):
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if not entry.replace("-", "").replace(".", "").isalnum():
                    raise ValueError(f"not a host name or CIDR: {entry!r}") from None
                hosts.add(entry.lower())
        return cls(tuple(networks), frozenset(hosts))

    def allows(self, host: str, address: IPAddress | None) -> bool:
        return host.lower() in self.hosts or (address is not None and any(address in n for n in self.networks))

    def refusal(self, scheme: str, host: str, address: IPAddress | None = None) -> str | None:
        """Why `host` (at `address`, when known) may not be called over `scheme`; None when it may."""
        if address is None:
            address = literal_address(host)
        if self.allows(host, address):
            return None
        if scheme != "https":
            return "plain http, to a host not in SAMBAND_WEBHOOK_ALLOW_NETWORKS"
        if address is not None and not _public(address):
            return "an address that is not public (loopback, private, link-local, unique-local, multicast or reserved)"
        return None


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _public(address: IPAddress) -> bool:
    """Global, not multicast or reserved, and so is an IPv4 address it carries (IPv4-mapped,
    IPv4-compatible, 6to4, NAT64): `::7f00:1` or `64:ff9b::a9fe:a9fe` may reach 127.0.0.1 or the
    cloud's metadata address where the network translates them."""
    if not address.is_global or address.is_multicast or address.is_reserved:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        value = int(address)
        carried = address.ipv4_mapped or address.sixtofour
        if carried is None and (address in _NAT64 or value >> 32 == 0):
            carried = ipaddress.IPv4Address(value & 0xFFFFFFFF)
        if carried is not None:
            return _public(carried)
    return True


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class GuardedResolver:
    """Resolves as usual (the system's resolver, in its thread pool), then keeps only the
    addresses the allow-list lets this scheme reach."""

    def __init__(self, allow: AllowList, scheme: str):
        self._allow = allow
        self._scheme = scheme

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses to try, in the resolver's order; AddressRefused when none may be reached."""
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        kept: list[str] = []
        for _, _, _, _, address in found:
            text = str(address[0])
            if text not in kept and self._allow.refusal(self._scheme, host, _address(text)) is None:
                kept.append(text)
        if not kept:
            raise AddressRefused("webhook host refused: it resolves to no address the bus may reach")
        return kept


def _address(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 link-local address may carry its scope
