"""The Kubernetes CEL extension functions the ClusterNetwork CRD's rules call, registered on `celpy` (cel-python).

CEL itself (operators, macros, `type()`, `size()`, `has()`) is cel-python's. Kubernetes adds libraries on top
(k8s.io/apiserver/pkg/cel/library); the CRD uses the IP and CIDR ones (`isCIDR`, `cidr()`, `.ip()`, `.family()`),
registered here with the rest of those two libraries so a new rule that uses them needs no code. Parsing follows
Go's `net/netip` as the library does: dotted-quad IPv4 without leading zeros, no IPv6 zones, a prefix length in
decimal without leading zeros, and IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) refused. `matches()` uses RE2, the
engine Kubernetes uses, not Python's `re` (which lets `$` match before a trailing newline).

A function that fails (an unparsable address) returns a `CELEvalError`, which CEL propagates like the API server's
evaluation error: the rule fails unless `||`/`&&` short-circuit it away.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import celpy
import re2
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_IPV4 = re.compile(r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}")
_BITS = re.compile(r"0|[1-9][0-9]{0,2}")
_IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.]+")


def parse_ip(text: str) -> IPAddress:
    """An address as Kubernetes' `ip()` accepts it; ValueError says why not."""
    if "%" in text:
        raise ValueError(f"IP address {text!r} with zone value is not allowed")
    address: IPAddress
    if ":" in text:
        if not _IPV6_CHARS.fullmatch(text):
            raise ValueError(f"IP address {text!r} is not an IPv6 address")
        address = ipaddress.IPv6Address(text)
        if address.ipv4_mapped is not None:
            raise ValueError(f"IPv4-mapped IPv6 address {text!r} is not allowed")
        tail = text.rsplit(":", 1)[-1]
        if "." in tail and not _IPV4.fullmatch(tail):
            raise ValueError(f"IP address {text!r} embeds an invalid IPv4 address")
        return address
    if not _IPV4.fullmatch(text):
        raise ValueError(f"IP address {text!r} is not a dotted-quad IPv4 address without leading zeros")
    return ipaddress.IPv4Address(text)


def parse_cidr(text: str) -> tuple[IPAddress, IPNetwork]:
    """(address as written, its network) as Kubernetes' `cidr()` accepts it; ValueError says why not.

    Host bits may be set (10.244.1.1/16 is a valid CIDR whose network is 10.244.0.0/16), as in Go's
    netip.ParsePrefix."""
    address_text, slash, bits = text.rpartition("/")
    if not slash:
        raise ValueError(f"{text!r} has no prefix length (write e.g. 10.244.0.0/16)")
    if "%" in address_text:
        raise ValueError(f"{text!r}: IPv6 zones cannot be present in a prefix")
    if not _BITS.fullmatch(bits):
        raise ValueError(f"{text!r}: bad prefix length {bits!r}")
    address = parse_ip(address_text)
    if int(bits) > address.max_prefixlen:
        raise ValueError(f"{text!r}: prefix length {bits} is larger than {address.max_prefixlen}")
    return address, ipaddress.ip_network(f"{address}/{bits}", strict=False)


@dataclass(frozen=True)
class IP:
    """A CEL `net.IP` value."""

    address: IPAddress


@dataclass(frozen=True)
class CIDR:
    """A CEL `net.CIDR` value: the address as written and its network."""

    address: IPAddress
    network: IPNetwork


def _error(message: str) -> CELEvalError:
    return CELEvalError(message)


def _as_ip(value: Any) -> IP | CELEvalError:
    if isinstance(value, IP):
        return value
    if isinstance(value, str):
        try:
            return IP(parse_ip(str(value)))
        except ValueError as err:
            return _error(f"IP Address {value!r} parse error during conversion from string: {err}")
    return _error(f"no such overload: ip({type(value).__name__})")


def _as_cidr(value: Any) -> CIDR | CELEvalError:
    if isinstance(value, CIDR):
        return value
    if isinstance(value, str):
        try:
            return CIDR(*parse_cidr(str(value)))
        except ValueError as err:
            return _error(f"network address parse error during conversion from string: {err}")
    return _error(f"no such overload: cidr({type(value).__name__})")


def _is_ip(value: Any) -> Any:
    return celtypes.BoolType(isinstance(_as_ip(value), IP))


def _is_cidr(value: Any) -> Any:
    return celtypes.BoolType(isinstance(value, str) and isinstance(_as_cidr(value), CIDR))


def _ip(value: Any) -> Any:
    """ip(string) parses; cidr.ip() is the CIDR's address as written."""
    if isinstance(value, CIDR):
        return IP(value.address)
    return _as_ip(value)


def _ip_method(test: Callable[[IPAddress], bool]) -> Callable[[Any], Any]:
    def method(value: Any) -> Any:
        ip = _as_ip(value) if not isinstance(value, IP) else value
        if isinstance(ip, CELEvalError):
            return ip
        return celtypes.BoolType(test(ip.address))

    return method


def _family(value: Any) -> Any:
    ip = _ip(value)
    return ip if isinstance(ip, CELEvalError) else celtypes.IntType(ip.address.version)


def _prefix_length(value: Any) -> Any:
    cidr = _as_cidr(value)
    return cidr if isinstance(cidr, CELEvalError) else celtypes.IntType(cidr.network.prefixlen)


def _masked(value: Any) -> Any:
    cidr = _as_cidr(value)
    return cidr if isinstance(cidr, CELEvalError) else CIDR(cidr.network.network_address, cidr.network)


def _contains_ip(value: Any, other: Any) -> Any:
    cidr, ip = _as_cidr(value), _as_ip(other)
    if isinstance(cidr, CELEvalError):
        return cidr
    if isinstance(ip, CELEvalError):
        return ip
    return celtypes.BoolType(ip.address.version == cidr.network.version and ip.address in cidr.network)


def _contains_cidr(value: Any, other: Any) -> Any:
    cidr, inner = _as_cidr(value), _as_cidr(other)
    if isinstance(cidr, CELEvalError):
        return cidr
    if isinstance(inner, CELEvalError):
        return inner
    outer, net = cidr.network, inner.network
    return celtypes.BoolType(net.version == outer.version and net.subnet_of(outer))  # type: ignore[arg-type]


def _matches(text: Any, pattern: Any) -> Any:
    try:
        return celtypes.BoolType(re2.search(str(pattern), str(text)) is not None)
    except re2.error as err:
        return _error(f"invalid regular expression {pattern!r}: {err}")


def regex_search(pattern: str, text: str) -> bool:
    """RE2 (Go regexp) search, as OpenAPI `pattern` and CEL `matches()` use it in the API server."""
    return re2.search(pattern, text) is not None


def _link_local_multicast(address: IPAddress) -> bool:
    if address.version == 4:
        return address in ipaddress.ip_network("224.0.0.0/24")
    return address in ipaddress.ip_network("ff02::/16")


def _global_unicast(address: IPAddress) -> bool:
    """Go's IP.IsGlobalUnicast: not unspecified, loopback, multicast, link-local or the IPv4 broadcast address."""
    return not (
        address.is_unspecified
        or address.is_loopback
        or address.is_multicast
        or address.is_link_local
        or address == ipaddress.IPv4Address("255.255.255.255")
    )


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "matches": _matches,
    "isIP": _is_ip,
    "ip": _ip,
    "isCIDR": _is_cidr,
    "cidr": _as_cidr,
    "family": _family,
    "isUnspecified": _ip_method(lambda a: a.is_unspecified),
    "isLoopback": _ip_method(lambda a: a.is_loopback),
    "isLinkLocalMulticast": _ip_method(_link_local_multicast),
    "isLinkLocalUnicast": _ip_method(lambda a: a.is_link_local and not a.is_multicast),
    "isGlobalUnicast": _ip_method(_global_unicast),
    "prefixLength": _prefix_length,
    "masked": _masked,
    "containsIP": _contains_ip,
    "containsCIDR": _contains_cidr,
}


_ENV = celpy.Environment()


@dataclass(frozen=True)
class CompiledRule:
    """One CEL rule, compiled once, with the functions above."""

    text: str
    program: celpy.Runner

    def holds(self, value: Any) -> bool | None:
        """Whether the rule holds with `self` bound to the JSON value; None when it cannot be evaluated (the
        API server then refuses, as for a rule that does not hold)."""
        try:
            result = self.program.evaluate({"self": json_to_cel(value)})
        except CELEvalError:
            return None
        if isinstance(result, CELEvalError):
            return None
        return bool(result)

    def evaluate(self, value: Any) -> Any:
        """The rule's value (for message expressions); raises CELEvalError."""
        result = self.program.evaluate({"self": json_to_cel(value)})
        if isinstance(result, CELEvalError):
            raise result
        return result


@cache
def compile_rule(text: str) -> CompiledRule:
    """ValueError when the rule does not parse."""
    try:
        return CompiledRule(text, _ENV.program(_ENV.compile(text), functions=FUNCTIONS))
    except CELParseError as err:
        raise ValueError(f"CEL rule {text!r} does not compile: {err}") from err
