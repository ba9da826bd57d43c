"""Render a ClusterNetwork into the ordered list of objects of its target revision.

Templates live in `templates/<plugin>/`: `conflist.yaml.j2` (the CNI conflist, as YAML data) and
`NNN-<name>.yaml.j2` files applied in name order. Every `{{ expression }}` is emitted as a JSON value (JSON is YAML),
so a value from a user can never add keys, containers or privileges: it can only ever be one scalar, list or map
where the template put it. Text is joined inside the expression: `{{ "calico-node-" ~ revision }}`.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox
import yaml

from cni_operator.api import vocabulary as L
from cni_operator.api.v1alpha1 import ClusterNetworkSpec
from cni_operator.catalog.loader import Catalog, data_root
from cni_operator.catalog.model import ComponentScope, PluginRelease
from cni_operator.catalog.versions import minor_of, parse_version
from cni_operator.plan.validate import ValidatedSpec, validate

REFERENCE_BINARIES = frozenset(
    [
        "bridge",
        "host-local",
        "loopback",
        "portmap",
        "bandwidth",
        "tuning",
        "ptp",
        "ipvlan",
        "macvlan",
        "firewall",
        "sbr",
        "static",
        "dhcp",
        "vrf",
        "vlan",
        "host-device",
        "dummy",
        "tap",
    ]
)
_CONFLIST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_TEMPLATE_NAME = re.compile(r"^\d{3}-[a-z0-9-]+\.yaml\.j2$")
# Spec fields that do not change what runs on a node; changing them must not start a rollout.
NOT_IN_REVISION = ("rollout", "versionPolicy", "nodeCleanup")


class RenderError(ValueError):
    """A template or its output is wrong, or the spec asks for what the plugin release cannot render."""


@dataclass(frozen=True)
class Rendering:
    """The objects of one revision, in apply order, and the facts they were made from."""

    revision: str
    release: PluginRelease
    conflist: dict[str, Any]
    objects: list[dict[str, Any]] = field(default_factory=list)
    overlays: tuple[PluginRelease, ...] = ()

    def component_of(self, obj: dict[str, Any]) -> str:
        return str(obj["metadata"]["labels"][L.COMPONENT])


# Characters YAML may not carry literally (non-printable, or line breaks to YAML); JSON leaves them raw.
_NOT_YAML_PRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ufffe\uffff]")


def _json_value(value: Any) -> str:
    """Jinja `finalize`: every expression is written as one JSON value (which is also a YAML flow value)."""
    if isinstance(value, jinja2.Undefined):  # StrictUndefined raises before this
        raise RenderError("undefined value in template")
    text = json.dumps(value, sort_keys=False, ensure_ascii=False)
    return _NOT_YAML_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _version_at_least(version: str, minimum: str) -> bool:
    return parse_version(version) >= parse_version(minimum)


def _environment(folder: Path) -> jinja2.Environment:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        finalize=_json_value,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.tests["version_at_least"] = _version_at_least
    return env


def canonical_spec(spec: ClusterNetworkSpec) -> dict[str, Any]:
    """The spec as the templates see it: camelCase keys, defaults filled in, enums as strings."""
    return spec.model_dump(by_alias=True, mode="json")


def compute_revision(plugin_versions: Iterable[str], conflist: dict[str, Any], spec: dict[str, Any]) -> str:
    """Hash of (plugin releases, conflist, the spec fields that shape node workloads): equal inputs, equal revision."""
    relevant = {key: value for key, value in spec.items() if key not in NOT_IN_REVISION}
    payload = json.dumps({"releases": list(plugin_versions), "conflist": conflist, "spec": relevant}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


class Renderer:
    """Renders specs with the templates under `root/templates` (default: the repository's)."""

    def __init__(self, catalog: Catalog, root: Path | None = None) -> None:
        self.catalog = catalog
        self.templates = (root or data_root()) / "templates"

    def render(
        self,
        spec: ValidatedSpec | ClusterNetworkSpec,
        *,
        kubernetes_version: str,
        adopt_unlabelled_nodes: bool = True,
    ) -> Rendering:
        """Render the revision a spec describes (validated first unless it already is; SpecError if invalid).
        `adopt_unlabelled_nodes` lets this revision's node workloads run on nodes that carry no revision label
        yet: true for the target revision, so that new nodes never wait for the operator."""
        validated = spec if isinstance(spec, ValidatedSpec) else validate(spec, self.catalog)
        release, overlays = validated.release, validated.overlays
        spec_data = canonical_spec(validated.spec)
        families = {f"ipv{ipaddress.ip_network(c).version}": c for c in validated.spec.pod_cidrs}
        base = {
            "spec": spec_data,
            "podNetworks": {"ipv4": families.get("ipv4"), "ipv6": families.get("ipv6")},
            "release": release.model_dump(by_alias=True, mode="json"),
            "settings": validated.settings,
            "cluster": {"kubernetesVersion": kubernetes_version, "kubernetesMinor": minor_of(kubernetes_version)},
            "labels": {"revision": L.REVISION, "component": L.COMPONENT},
        }
        conflist = self._conflist(release, base)
        revision = compute_revision([r.key for r in (release, *overlays)], conflist, spec_data)
        context = {
            **base,
            "revision": revision,
            "conflist": conflist,
            "conflistJson": json.dumps(conflist, indent=2, sort_keys=False),
        }
        objects = self._objects(release, context, revision, adopt_unlabelled_nodes)
        for overlay in overlays:
            overlay_context = {
                **context,
                "release": overlay.model_dump(by_alias=True, mode="json"),
                "primary": base["release"],
            }
            objects += self._objects(overlay, overlay_context, revision, adopt_unlabelled_nodes)
        return Rendering(revision=revision, release=release, conflist=conflist, objects=objects, overlays=overlays)

    # -- conflist ----------------------------------------------------------------------------------------------

    def _conflist(self, release: PluginRelease, context: dict[str, Any]) -> dict[str, Any]:
        folder = self.templates / release.plugin
        text = self._render_text(folder, "conflist.yaml.j2", context)
        where = f"templates/{release.plugin}/conflist.yaml.j2"
        try:
            conflist = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise RenderError(f"{where}: does not render valid YAML: {err}") from err
        if not isinstance(conflist, dict):
            raise RenderError(f"{where}: must render a mapping, got {type(conflist).__name__}")
        if conflist.get("cniVersion") != release.cni.cni_version:
            raise RenderError(
                f"{where}: cniVersion {conflist.get('cniVersion')!r} differs from the catalog's "
                f"{release.cni.cni_version!r} for {release.key}"
            )
        if not _CONFLIST_NAME.match(str(conflist.get("name", ""))):
            raise RenderError(f"{where}: name must start with a letter or digit and hold only [A-Za-z0-9_.-]")
        plugins = conflist.get("plugins")
        if not isinstance(plugins, list) or not plugins:
            raise RenderError(f"{where}: needs a non-empty 'plugins' list")
        known = set(release.cni.binaries) | REFERENCE_BINARIES
        for index, plugin in enumerate(plugins):
            kind = plugin.get("type") if isinstance(plugin, dict) else None
            if kind not in known:
                raise RenderError(
                    f"{where}: plugins[{index}].type {kind!r} is neither a binary the catalog lists "
                    f"for {release.key} nor a reference plugin"
                )
        return conflist

    # -- objects -----------------------------------------------------------------------------------------------

    def _objects(
        self, release: PluginRelease, context: dict[str, Any], revision: str, adopt_unlabelled_nodes: bool
    ) -> list[dict[str, Any]]:
        folder = self.templates / release.plugin
        names = sorted(p.name for p in folder.glob("*.yaml.j2") if p.name != "conflist.yaml.j2")
        if not names:
            raise RenderError(f"templates/{release.plugin}/ holds no NNN-*.yaml.j2 templates")
        scopes = {c.name: c.scope for c in release.components}
        objects: list[dict[str, Any]] = []
        for name in names:
            where = f"templates/{release.plugin}/{name}"
            if not _TEMPLATE_NAME.match(name):
                raise RenderError(f"{where}: template names are NNN-lowercase-name.yaml.j2")
            try:
                documents = list(yaml.safe_load_all(self._render_text(folder, name, context)))
            except yaml.YAMLError as err:
                raise RenderError(f"{where}: does not render valid YAML: {err}") from err
            for doc in documents:
                if doc is None:
                    continue
                self._finish(doc, where, release, scopes, revision, adopt_unlabelled_nodes)
                objects.append(doc)
        return objects

    def _render_text(self, folder: Path, name: str, context: dict[str, Any]) -> str:
        try:
            return _environment(folder).get_template(name).render(context)
        except jinja2.TemplateNotFound as err:
            raise RenderError(f"templates/{folder.name}/{name} not found") from err
        except jinja2.UndefinedError as err:
            raise RenderError(f"templates/{folder.name}/{name}: {err.message}") from err

    @staticmethod
    def _finish(
        obj: dict[str, Any],
        where: str,
        release: PluginRelease,
        scopes: dict[str, ComponentScope],
        revision: str,
        adopt_unlabelled_nodes: bool,
    ) -> None:
        """Check an object's identity and component; label it; tie node workloads to the revision."""
        if not isinstance(obj, dict) or not {"apiVersion", "kind", "metadata"} <= obj.keys():
            raise RenderError(f"{where}: every document needs apiVersion, kind and metadata")
        meta = obj["metadata"]
        ident = f"{obj['kind']} {meta.get('name')!r}"
        labels = meta.setdefault("labels", {})
        component = labels.get(L.COMPONENT)
        if component not in scopes:
            raise RenderError(f"{where}: {ident} needs label {L.COMPONENT} set to one of {sorted(scopes)}")
        labels.update({L.PLUGIN: release.plugin, L.RELEASE: release.version, L.MANAGED_BY: L.MANAGER})
        if scopes[component] is ComponentScope.NODE:
            if not str(meta.get("name", "")).endswith(revision):
                raise RenderError(
                    f'{where}: node-level {ident} must end its name with the revision: {{{{ "name-" ~ revision }}}}'
                )
            labels[L.REVISION] = revision
            if obj["kind"] == "DaemonSet":
                _bind_to_revision(obj, revision, adopt_unlabelled_nodes)


def _bind_to_revision(daemonset: dict[str, Any], revision: str, adopt_unlabelled_nodes: bool) -> None:
    """Run the DaemonSet's pods only on nodes labelled with this revision (and, for the target, unlabelled ones).

    Its update strategy becomes OnDelete: a revision's pod template never changes its pods' behaviour (that would be
    a new revision), and the operator, not the DaemonSet controller, decides when a node's CNI pod is replaced: by
    moving the node's label. So when a rollout starts and the old revision stops adopting unlabelled nodes, its
    running pods are not restarted."""
    spec = daemonset["spec"]
    spec["updateStrategy"] = {"type": "OnDelete"}
    spec["selector"].setdefault("matchLabels", {})[L.REVISION] = revision
    template = spec["template"]
    template.setdefault("metadata", {}).setdefault("labels", {})[L.REVISION] = revision
    alternatives = [{"key": L.NODE_REVISION, "operator": "In", "values": [revision]}]
    if adopt_unlabelled_nodes:
        alternatives.append({"key": L.NODE_REVISION, "operator": "DoesNotExist"})
    affinity = template["spec"].setdefault("affinity", {}).setdefault("nodeAffinity", {})
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    existing = required.get("nodeSelectorTerms") or [{}]
    # Terms are ORed and expressions inside a term ANDed: keep the template's own terms, each with one alternative.
    terms = [
        copy.deepcopy({**term, "matchExpressions": [*term.get("matchExpressions", []), alternative]})
        for alternative in alternatives
        for term in existing
    ]
    affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": terms}
