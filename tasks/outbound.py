"""Where Stepwise may send requests of its own: alert webhooks go to public addresses only, unless allowed.

A webhook URL is typed by an environment admin, but the request leaves from the scheduler, inside
the deployment's network: without a check, a URL could reach the cloud's metadata service
(169.254.169.254), a database's HTTP port or an internal admin page. So a host that is, or
resolves to, a loopback, private, link-local, shared, reserved or multicast address is refused
when the rule is saved (if the name resolves then) and again before each delivery (names change).
STEPWISE_ALERT_PRIVATE_WEBHOOKS=1 allows them, for receivers inside the same network.
"""
from __future__ import annotations

import ipaddress
import socket

from django.conf import settings


class PrivateAddress(ValueError):
    """The URL's host is, or resolves to, an address inside a private network."""


def _private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def host_check_public(host: str, *, resolve: bool) -> None:
    """Raise PrivateAddress when ``host`` is (or, with ``resolve``, resolves to) a non-public address.

    A name that does not resolve passes: the delivery fails later, saying so. Nothing is checked
    when the deployment allows private webhooks.
    """
    if settings.STEPWISE_ALERT_PRIVATE_WEBHOOKS:
        return
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    elif not resolve:
        return
    else:
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            return
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    private = [str(address) for address in addresses if _private(address)]
    if private:
        shown = host if literal is not None else f"{host} ({', '.join(sorted(set(private)))})"
        raise PrivateAddress(
            f"the webhook host {shown} is a private, loopback or link-local address; "
            "set STEPWISE_ALERT_PRIVATE_WEBHOOKS=1 to allow receivers inside your network"
        )
