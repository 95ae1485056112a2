"""Requests the hub makes on its own (webhook deliveries): only to public addresses, and only to the one checked.

An address is public unless it falls in one of the IANA special-purpose registries' blocks (IPv4 and IPv6, as of
2025) or outside IPv6's global unicast ``2000::/3``. Addresses that carry an IPv4 address (IPv4-mapped, NAT64's
well-known prefix, 6to4) are judged by the IPv4 address they carry; IPv4-compatible, Teredo and local-use NAT64
addresses are refused outright. :func:`post` resolves the name once, checks every address it resolves to, and
connects to a checked address with the URL's name in ``Host`` and, over TLS, as the SNI name the certificate is
verified against: a name rebound to another address between the check and the connection (DNS rebinding) changes
nothing, since nothing resolves it a second time.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping, Sequence

import httpx

__all__ = ["NotPublicError", "Resolver", "local_target", "post", "resolve", "special_purpose", "system_resolver"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port)`` → the addresses it resolves to, as strings; :class:`OSError` when it does not resolve."""


def _table(rows: str) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]:
    out = []
    for row in rows.strip().splitlines():
        network, _, why = row.strip().partition(" ")
        out.append((ipaddress.ip_network(network), why.strip()))
    return out


_IPV4 = _table("""
    0.0.0.0/8           this network
    10.0.0.0/8          private
    100.64.0.0/10       shared address space (carrier-grade NAT)
    127.0.0.0/8         loopback
    169.254.0.0/16      link-local
    172.16.0.0/12       private
    192.0.0.0/24        IETF protocol assignments
    192.0.2.0/24        documentation (TEST-NET-1)
    192.88.99.0/24      6to4 relay anycast (deprecated)
    192.168.0.0/16      private
    198.18.0.0/15       benchmarking
    198.51.100.0/24     documentation (TEST-NET-2)
    203.0.113.0/24      documentation (TEST-NET-3)
    224.0.0.0/4         multicast
    255.255.255.255/32  limited broadcast
    240.0.0.0/4         reserved
""")
"""IANA IPv4 Special-Purpose Address Registry (blocks not globally reachable), multicast and broadcast."""

_IPV6 = _table("""
    ::/128              unspecified
    ::1/128             loopback
    ::/96               IPv4-compatible (deprecated)
    64:ff9b:1::/48      local-use IPv4/IPv6 translation
    100::/64            discard-only
    100:0:0:1::/64      dummy prefix
    2001::/32           Teredo
    2001:2::/48         benchmarking
    2001:10::/28        ORCHID (deprecated)
    2001::/23           IETF protocol assignments
    2001:db8::/32       documentation
    3fff::/20           documentation
    5f00::/16           segment routing (SRv6) SIDs
    fc00::/7            unique-local
    fe80::/10           link-local
    fec0::/10           site-local (deprecated)
    ff00::/8            multicast
""")
"""IANA IPv6 Special-Purpose Address Registry (blocks not globally reachable) and the deprecated site-local and
multicast blocks; anything else outside ``2000::/3`` is refused too."""

_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_6TO4 = ipaddress.IPv6Network("2002::/16")


def special_purpose(address: Address) -> str | None:
    """Why ``address`` is not a public unicast address (the block it is in), or None if it is one."""
    if isinstance(address, ipaddress.IPv4Address):
        return next((f"{why} in {net}" for net, why in _IPV4 if address in net), None)
    embedded, via = None, ""
    if address in _MAPPED:
        embedded, via = address.ipv4_mapped, "IPv4-mapped"
    elif address in _NAT64:
        embedded, via = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "NAT64"
    elif address in _6TO4:
        embedded, via = address.sixtofour, "6to4"
    if embedded is not None:
        why = special_purpose(embedded)
        return None if why is None else f"{via} {embedded}: {why}"
    found = next((f"{why} in {net}" for net, why in _IPV6 if address in net), None)
    if found is None and address not in _GLOBAL_UNICAST:
        return "not global unicast (outside 2000::/3)"
    return found


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the operating system resolves ``host`` to, in its order, each once (scope ids dropped)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as e:
        raise OSError(f"cannot resolve {host!r}: {e}") from None
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))


class NotPublicError(Exception):
    """A name resolves to an address that is not public: ``.address`` and ``.reason``."""

    def __init__(self, host: str, address: Address, reason: str) -> None:
        super().__init__(f"{host} resolves to {address}, {reason}")
        self.address, self.reason = address, reason


def _parts(url: str | httpx.URL) -> tuple[httpx.URL, str, int]:
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise httpx.InvalidURL(f"not an http(s) URL with a host: {str(url)[:200]!r}")
    return parsed, parsed.raw_host.decode("ascii"), parsed.port or (443 if parsed.scheme == "https" else 80)


def resolve(url: str | httpx.URL, *, allow_local: bool = False, resolver: Resolver = system_resolver) -> list[Address]:
    """The addresses ``url``'s host resolves to, resolved once; :class:`NotPublicError` if any is not public (unless
    ``allow_local``), :class:`OSError` if there is none."""
    _, host, port = _parts(url)
    addresses = [ipaddress.ip_address(a) for a in resolver(host, port)]
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    for address in addresses:
        if not allow_local and (why := special_purpose(address)) is not None:
            raise NotPublicError(host, address, why)
    return addresses


def local_target(url: str, *, resolver: Resolver = system_resolver) -> str | None:
    """A non-public address ``url``'s host resolves to, with the reason, if any; None also when the URL has no
    host or it does not resolve (a delivery then fails on its own)."""
    try:
        resolve(url, resolver=resolver)
    except NotPublicError as e:
        return f"{e.address} ({e.reason})"
    except (OSError, ValueError, httpx.InvalidURL):
        return None
    return None


def post(
    client: httpx.Client,
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    allow_local: bool = False,
    resolver: Resolver = system_resolver,
) -> httpx.Response:
    """POST to ``url`` at an address :func:`resolve` checked, trying them in turn while they refuse the connection.

    The name goes in ``Host`` and, for https, is the SNI name the certificate must match. Each request closes its
    connection, so none is reused for another name at the same address. :class:`NotPublicError` as
    :func:`resolve`; a name that does not resolve is an :class:`httpx.ConnectError`.
    """
    parsed, host, _ = _parts(url)
    try:
        addresses = resolve(parsed, allow_local=allow_local, resolver=resolver)
    except OSError as e:
        raise httpx.ConnectError(f"cannot resolve {host}: {e}") from e
    sent = {**headers, "host": parsed.netloc.decode("ascii"), "connection": "close"}
    extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
    for number, address in enumerate(addresses):
        try:
            target = parsed.copy_with(host=str(address))
            return client.post(target, content=content, headers=sent, extensions=extensions)
        except httpx.ConnectError:
            if number == len(addresses) - 1:
                raise
    raise AssertionError("unreachable")
