"""One corpus of ClusterNetwork specs, good and bad: a few dozen picked by hand at the edges of every rule of the
CRD, plus a seeded batch that hypothesis generates. The admission agreement test (tests/integration) and the CLI
robustness test (tests/unit) share it."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

BASE: dict[str, Any] = {"plugin": "calico", "version": "v3.31.7", "podCIDRs": ["10.244.0.0/16"]}
UNSET = object()  # remove the field

# (what it tests, changes to BASE at a dotted path; UNSET removes the field)
HAND_PICKED: list[tuple[str, dict[str, Any]]] = [
    ("the base spec", {}),
    (
        "dual-stack, fixed MTU, percentage",
        {"podCIDRs": ["10.244.0.0/16", "fd00:10:244::/56"], "mtu": 1450, "rollout.maxUnavailable": "25%"},
    ),
    ("IPv6 only", {"podCIDRs": ["fd00::/8"]}),
    ("plugin facts are the catalog's: flannel with networkPolicy", {"plugin": "flannel"}),
    ("plugin facts are the catalog's: weave-net with bgp", {"plugin": "weave-net", "bgp": True}),
    ("plugin facts are the catalog's: IPsec with calico", {"encryption": "IPsec"}),
    ("plugin facts are the catalog's: IPIP with cilium", {"plugin": "cilium", "encapsulation": "IPIP"}),
    ("host bits set (admitted, the operator refuses)", {"podCIDRs": ["10.244.1.1/16"]}),
    ("every address (admitted, the operator refuses)", {"podCIDRs": ["0.0.0.0/0"]}),
    ("a version the catalog lacks", {"version": "v999.0.0"}),
    ("null encapsulation is pruned", {"encapsulation": None}),
    ("null mtu gets the default", {"mtu": None}),
    ("null required plugin", {"plugin": None}),
    ("missing plugin", {"plugin": UNSET}),
    ("missing podCIDRs", {"podCIDRs": UNSET}),
    ("unknown plugin", {"plugin": "foo"}),
    ("plugin of the wrong type", {"plugin": 5}),
    ("version without v", {"version": "3.30.0"}),
    ("version with a trailing newline (RE2 $)", {"version": "v1.2.3\n"}),
    ("version too long", {"version": "v" + "1" * 30 + ".0.0"}),
    ("version of the wrong type", {"version": 1.2}),
    ("no podCIDRs", {"podCIDRs": []}),
    ("three podCIDRs", {"podCIDRs": ["10.0.0.0/16", "fd00::/56", "10.1.0.0/16"]}),
    ("two IPv4 ranges", {"podCIDRs": ["10.244.0.0/16", "10.245.0.0/16"]}),
    ("two IPv6 ranges", {"podCIDRs": ["fd00::/56", "fd01::/56"]}),
    ("prefix too long", {"podCIDRs": ["10.244.0.0/33"]}),
    ("no prefix", {"podCIDRs": ["10.244.0.0"]}),
    ("leading zero in an octet", {"podCIDRs": ["010.244.0.0/16"]}),
    ("leading zero in the prefix", {"podCIDRs": ["10.244.0.0/016"]}),
    ("netmask instead of a prefix", {"podCIDRs": ["10.244.0.0/255.255.0.0"]}),
    ("IPv4-mapped IPv6", {"podCIDRs": ["::ffff:10.244.0.0/112"]}),
    ("IPv6 zone", {"podCIDRs": ["fe80::1%eth0/64"]}),
    ("null CIDR", {"podCIDRs": [None]}),
    ("podCIDRs as a string", {"podCIDRs": "10.244.0.0/16"}),
    ("CIDR longer than 43 characters", {"podCIDRs": ["fd00:0000:0000:0000:0000:0000:0000:0000/128"]}),
    ("MTU too small", {"mtu": 100}),
    ("MTU too large", {"mtu": 9001}),
    ("MTU at the bounds", {"mtu": 9000}),
    ("MTU as a word", {"mtu": "big"}),
    ("MTU as a numeric string", {"mtu": "1500"}),
    ("MTU as a boolean", {"mtu": True}),
    ("MTU as a float", {"mtu": 1500.5}),
    ("MTU as an integral float", {"mtu": 1500.0}),
    ("maxUnavailable as an integral float", {"rollout.maxUnavailable": 2.0}),
    ("canary beyond int64", {"rollout.canary.nodes": 10**20}),
    ("empty plugin", {"plugin": ""}),
    ("empty spec", {"plugin": UNSET, "version": UNSET, "podCIDRs": UNSET}),
    ("unicode in a CIDR", {"podCIDRs": ["\uff110.0.0.0/8"]}),  # a full-width digit one
    ("IPv6 with an embedded IPv4", {"podCIDRs": ["64:ff9b::10.0.0.0/120"]}),
    ("IPv6 upper case", {"podCIDRs": ["FD00:10:244::/56"]}),
    ("nodeSelector not a map", {"rollout.canary.nodeSelector": ["a"]}),
    ("settings null", {"settings": None}),
    ("multus null", {"multus": None}),
    ("maxUnavailable 0", {"rollout.maxUnavailable": 0}),
    ("maxUnavailable 0%", {"rollout.maxUnavailable": "0%"}),
    ("maxUnavailable 100%", {"rollout.maxUnavailable": "100%"}),
    ("maxUnavailable 150%", {"rollout.maxUnavailable": "150%"}),
    ("maxUnavailable as a numeric string", {"rollout.maxUnavailable": "10"}),
    ("maxUnavailable 5 %", {"rollout.maxUnavailable": "5 %"}),
    ("maxUnavailable 1000", {"rollout.maxUnavailable": 1000}),
    ("canary of 0 nodes", {"rollout.canary.nodes": 0}),
    ("negative canary", {"rollout.canary.nodes": -1}),
    ("canary as an integral float", {"rollout.canary.nodes": 2.0}),
    ("canary node selector", {"rollout.canary.nodeSelector": {"pool": "canary"}}),
    ("canary node selector of numbers", {"rollout.canary.nodeSelector": {"pool": 1}}),
    ("health gate too short", {"rollout.healthGate.timeoutSeconds": 1}),
    ("health gate as a string", {"rollout.healthGate.timeoutSeconds": "300"}),
    ("unknown encryption", {"encryption": "Sometimes"}),
    ("unknown encapsulation", {"encapsulation": "GRE"}),
    ("networkPolicy as a string", {"networkPolicy": "yes"}),
    ("unknown nodeCleanup", {"nodeCleanup": "Delete"}),
    ("unknown top-level field", {"surprise": True}),
    ("misspelt field", {"podCIDR": ["10.244.0.0/16"]}),
    ("unknown nested field", {"rollout.surprise": 1}),
    ("anything goes in settings", {"settings": {"foo": {"bar": [1, None]}}}),
    ("settings not an object", {"settings": "fast"}),
    ("multus with a version", {"multus": {"enabled": True, "version": "v4.3.0"}}),
    ("multus version too long", {"multus": {"enabled": True, "version": "v" + "9" * 40}}),
    ("rollout not an object", {"rollout": []}),
    ("several errors at once", {"plugin": "foo", "mtu": 1, "rollout.maxUnavailable": 0}),
]


def _changed(changes: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = spec
        for part in parents:
            node = node.setdefault(part, {})
        if value is UNSET:
            node.pop(leaf, None)
        else:
            node[leaf] = copy.deepcopy(value)
    return spec


# -- the generated batch --------------------------------------------------------------------------------------------

_octet = st.one_of(st.integers(0, 255).map(str), st.sampled_from(["256", "00", "01", "1a", ""]))
_ipv4ish = st.builds(lambda parts: ".".join(parts), st.lists(_octet, min_size=3, max_size=5))
_prefix = st.one_of(st.integers(0, 130).map(str), st.sampled_from(["", "08", "+8", "-1", "x"]))
_cidrish = st.one_of(
    st.builds(lambda ip, p: f"{ip}/{p}", _ipv4ish, _prefix),
    st.builds(lambda ip, p: f"{ip}/{p}", st.ip_addresses(v=4).map(str), st.integers(0, 33)),
    st.builds(lambda ip, p: f"{ip}/{p}", st.ip_addresses(v=6).map(str), st.integers(0, 129)),
    st.text(alphabet="0123456789abcdef.:/%", max_size=24),
)
_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "plugin": st.sampled_from(["calico", "flannel", "cilium", "weave-net", "reference", "multus", "Calico", ""]),
    "version": st.one_of(
        st.from_regex(r"v[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True),
        st.text(alphabet="v0123456789.-\n", max_size=12),
    ),
    "podCIDRs": st.lists(_cidrish, max_size=3),
    "mtu": st.one_of(st.integers(1000, 10000), st.sampled_from(["auto", "Auto", "1500", "", None])),
    "encapsulation": st.sampled_from(["VXLAN", "IPIP", "Geneve", "None", "vxlan", None]),
    "encryption": st.sampled_from(["None", "WireGuard", "IPsec", "wireguard"]),
    "networkPolicy": st.one_of(st.booleans(), st.sampled_from(["true", 1])),
    "bgp": st.booleans(),
    "rollout.maxUnavailable": st.one_of(
        st.integers(-2, 200), st.builds(lambda n: f"{n}%", st.integers(-1, 120)), st.sampled_from(["%", "1.5%"])
    ),
    "rollout.canary.nodes": st.integers(-2, 1002),
    "rollout.healthGate.timeoutSeconds": st.integers(0, 90000),
    "rollout.evictionTimeoutSeconds": st.integers(-1, 90000),
    "multus": st.fixed_dictionaries(
        {"enabled": st.booleans()}, optional={"version": st.text(alphabet="v0123456789.", max_size=40)}
    ),
    "nodeCleanup": st.sampled_from(["Keep", "Remove", "keep"]),
    "surprise": st.just(1),
}


@st.composite
def _generated(draw: st.DrawFn) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(sorted(_FIELDS)), min_size=1, max_size=4, unique=True))
    return _changed({name: draw(_FIELDS[name]) for name in chosen})


def _generated_batch(count: int) -> list[dict[str, Any]]:
    batch: list[dict[str, Any]] = []

    @seed(11)
    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(_generated())
    def collect(spec: dict[str, Any]) -> None:
        batch.append(spec)

    collect()
    return batch


def corpus() -> list[tuple[str, dict[str, Any]]]:
    hand = [(what, _changed(changes)) for what, changes in HAND_PICKED]
    generated = [("generated", spec) for spec in _generated_batch(150)]
    return hand + generated
