"""`cni-operator`: the operator's command line."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=True, soft_wrap=True)  # messages stay whole lines: CI logs get grepped
# Wide tables when piped (CI logs, files) instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 200)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    except UserFacingError as err:
        console.print(f"[red]error:[/] {err}")
        return 1
    return code


class UserFacingError(Exception):
    """An error whose message tells the user what to do; printed without a traceback."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cni-operator", description=__doc__)
    commands = parser.add_subparsers(title="commands")

    sandbox = commands.add_parser("sandbox", help="a local Kubernetes control plane with fake nodes")
    sandbox_commands = sandbox.add_subparsers(title="sandbox commands")
    for name, handler, helptext in (
        ("up", _sandbox_up, "start a sandbox in the background and return once it is ready"),
        ("down", _sandbox_down, "stop the sandbox"),
        ("status", _sandbox_status, "show the sandbox's processes, memory and nodes"),
        ("kubeconfig", _sandbox_kubeconfig, "print the path of the sandbox's admin kubeconfig"),
    ):
        sub = sandbox_commands.add_parser(name, help=helptext)
        sub.add_argument("--state-dir", type=Path, default=None, help="the sandbox's folder (default: in the cache)")
        sub.set_defaults(handler=handler)
        if name == "up":
            _add_node_arguments(sub)
        if name == "status":
            sub.add_argument(
                "--real-nodes-json",
                action="store_true",
                help="print only the real nodes (conf dir, processes, memory, the runtime's loaded CNI config) as JSON",
            )

    run = commands.add_parser("run", help="run the operator (out of cluster with a kubeconfig, or in cluster)")
    run.add_argument("--kubeconfig", default=None, help="kubeconfig path (default: $KUBECONFIG, or in-cluster)")
    run.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE", "kube-system"),
        help="namespace of the leader-election Lease (default: $POD_NAMESPACE or kube-system)",
    )
    run.add_argument("--metrics-port", type=int, default=8080, help="Prometheus metrics port (0 disables)")
    run.add_argument("--liveness-port", type=int, default=None, help="serve /healthz on this port")
    run.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    run.set_defaults(handler=_run)

    render = commands.add_parser("render", help="print the manifests a ClusterNetwork renders to, as YAML")
    render.add_argument("-f", "--filename", type=Path, required=True, help="ClusterNetwork YAML ('-' for stdin)")
    render.add_argument(
        "--kubernetes-version", default=None, help="target Kubernetes version (default: newest the release supports)"
    )
    render.set_defaults(handler=_render)

    validate = commands.add_parser(
        "validate",
        help="check ClusterNetwork files offline (for CI in GitOps repos)",
        description="Check each ClusterNetwork as the API server's admission would (the CRD's schema and CEL rules: "
        "what 'kubectl apply' refuses), then as the operator would (the catalog: releases, features, settings, pod "
        "ranges: what the operator refuses in status). Exit 1 when any is refused; warnings (settings the plugin "
        "ignores) do not fail unless --warnings-as-errors.",
    )
    validate.add_argument("-f", "--filename", type=Path, required=True, nargs="+", help="YAML files ('-' for stdin)")
    validate.add_argument(
        "--kubernetes-version",
        default=None,
        help="the cluster's Kubernetes version, for defaults that depend on it (the Multus release)",
    )
    validate.add_argument("-o", "--output", choices=["text", "json"], default="text", help="text (default) or json")
    validate.add_argument("--warnings-as-errors", action="store_true", help="exit 1 on warnings too")
    validate.set_defaults(handler=_validate)

    crd = commands.add_parser("crd", help="print a CRD generated from the API models (default: ClusterNetwork)")
    crd.add_argument(
        "--kind", choices=["ClusterNetwork", "NodeNetworkState"], default="ClusterNetwork", help="which CRD"
    )
    crd.add_argument("--write", type=Path, default=None, help="write it to this file instead")
    crd.add_argument("--also", type=Path, nargs="*", default=[], help="and to these (e.g. the Helm chart's copy)")
    crd.set_defaults(handler=_crd)

    catalog = commands.add_parser("catalog", help="list the plugin releases the operator knows")
    catalog.set_defaults(handler=_catalog)

    _add_agent_commands(commands)

    skew = commands.add_parser(
        "skew",
        help="version skew: does the plugin suit the live cluster, or which releases suit a planned Kubernetes",
        description="Without --kubernetes-version: read the cluster from the kubeconfig and print its nodes, the "
        "findings for the ClusterNetwork's running and target releases, and every catalog release's fit (exit 1 "
        "when the ClusterNetwork's releases do not suit the cluster). With --kubernetes-version: offline, for a "
        "planned Kubernetes upgrade, which plugin releases keep working and what to upgrade first.",
    )
    skew.add_argument("--kubeconfig", default=None, help="kubeconfig path (default: $KUBECONFIG)")
    skew.add_argument(
        "--kubernetes-version", default=None, help="planned Kubernetes version, e.g. v1.36.0 (offline: no cluster)"
    )
    skew.add_argument("--plugin", default=None, help="only this plugin's releases")
    skew.set_defaults(handler=_skew)

    demo = commands.add_parser("demo", help="bring up a sandbox and show the operator at work")
    _add_node_arguments(demo, default_nodes=3)
    demo.add_argument("--keep", action="store_true", help="leave the sandbox running afterwards")
    demo.set_defaults(handler=_demo)
    return parser


def _add_agent_commands(commands: Any) -> None:
    agent = commands.add_parser("agent", help="the node agent (runs on every node as a DaemonSet)")
    sub = agent.add_subparsers(title="agent commands")

    def paths(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--conf-dir", type=Path, default=Path("/etc/cni/net.d"), help="the CNI conf dir")
        parser.add_argument("--bin-dir", type=Path, default=Path("/opt/cni/bin"), help="the CNI bin dir")
        parser.add_argument(
            "--state-dir",
            type=Path,
            default=Path("/var/lib/cni-operator"),
            help="the agent's own files: quarantine, install record, datapath-check leases",
        )

    run = sub.add_parser("run", help="install, quarantine, inventory, check and report, until stopped")
    paths(run)
    run.add_argument("--node-name", default=os.environ.get("NODE_NAME"), help="this node (default: $NODE_NAME)")
    run.add_argument("--kubeconfig", default=None, help="kubeconfig path (default: $KUBECONFIG, or in-cluster)")
    run.add_argument(
        "--revision",
        default=os.environ.get("CNI_OPERATOR_REVISION", ""),
        help="the agent's own revision, used while the node has no revision label",
    )
    run.add_argument("--namespace", default="kube-system", help="where the conflist ConfigMaps are")
    run.add_argument("--interval", type=float, default=10.0, help="seconds between local re-scans")
    run.add_argument("--check-interval", type=float, default=600.0, help="seconds between passing datapath checks")
    run.add_argument("--netns-prefix", default="cnio-chk-", help="name prefix of the check's network namespaces")
    run.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    run.set_defaults(handler=_agent_run)

    install = sub.add_parser("install-binaries", help="copy CNI plugin binaries atomically (the init container)")
    install.add_argument("--from", dest="source", type=Path, required=True, help="folder of plugin binaries")
    install.add_argument("--to", dest="target", type=Path, required=True, help="the node's CNI bin dir")
    install.add_argument("--binaries", default=None, help="comma-separated names (default: every executable)")
    install.set_defaults(handler=_agent_install_binaries)

    check = sub.add_parser("check", help="run one datapath check of the active config; exit 1 when it fails")
    paths(check)
    check.add_argument("--pod-cidr", action="append", default=[], help="the node's pod CIDR (repeat for dual-stack)")
    check.add_argument("--node-name", default=os.environ.get("NODE_NAME"), help="read the pod CIDRs of this node")
    check.add_argument("--kubeconfig", default=None, help="kubeconfig for --node-name")
    check.add_argument("--netns-prefix", default="cnio-chk-", help="name prefix of the check's network namespaces")
    check.add_argument(
        "--skip-check", default="", help="plugin types whose CNI CHECK is not called, comma-separated (skipCheck)"
    )
    check.set_defaults(handler=_agent_check)

    restore = sub.add_parser("restore", help="put quarantined configs back into the conf dir")
    paths(restore)
    restore.add_argument("names", nargs="*", help="file names to restore (default: the newest copy of each)")
    restore.set_defaults(handler=_agent_restore)


def _agent_run(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from cni_operator.agent.kube import KubeCluster, watch_node
    from cni_operator.agent.runner import Agent, AgentSettings
    from cni_operator.kube.client import api_client

    if not args.node_name:
        raise UserFacingError("--node-name (or $NODE_NAME) is required: the agent reports for one node")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = AgentSettings(
        node_name=args.node_name,
        conf_dir=args.conf_dir,
        bin_dir=args.bin_dir,
        state_dir=args.state_dir,
        revision=args.revision,
        interval=args.interval,
        check_interval=args.check_interval,
        netns_prefix=args.netns_prefix,
    )
    client = api_client(args.kubeconfig)
    stop, changed = threading.Event(), threading.Event()

    def on_signal(*_: object) -> None:
        stop.set()
        changed.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    watch_node(client, args.node_name, changed, stop)
    Agent(settings, KubeCluster(client, args.namespace)).run(stop, changed)
    return 0


def _agent_install_binaries(args: argparse.Namespace) -> int:
    from cni_operator.agent.files import install_binaries
    from cni_operator.agent.inventory import BINARY_MANIFEST

    names = [n.strip() for n in args.binaries.split(",") if n.strip()] if args.binaries else None
    try:
        installed = install_binaries(args.source, args.target, names, manifest=BINARY_MANIFEST)
    except OSError as err:
        raise UserFacingError(str(err)) from err
    for binary in installed:
        state = "installed" if binary.changed else "unchanged"
        out.print(f"{binary.name}: {state} sha256:{binary.sha256}", highlight=False)
    return 0


def _agent_check(args: argparse.Namespace) -> int:
    import json

    from cni_operator.agent.runner import check_active_config

    cidrs = list(args.pod_cidr)
    if not cidrs and args.node_name:
        from cni_operator.agent.kube import KubeCluster
        from cni_operator.kube.client import api_client

        cidrs = KubeCluster(api_client(args.kubeconfig)).node(args.node_name).pod_cidrs
    if not cidrs:
        raise UserFacingError("give the node's pod CIDRs with --pod-cidr, or --node-name to read them from the Node")
    skip = [s for s in (args.skip_check or "").split(",") if s]
    result = check_active_config(
        args.conf_dir, args.bin_dir, cidrs, args.state_dir, prefix=args.netns_prefix, skip_check=skip
    )
    sys.stdout.write(json.dumps({**result.as_status(), "addresses": result.addresses}, indent=2) + "\n")
    return 0 if result.passed else 1


def _agent_restore(args: argparse.Namespace) -> int:
    from cni_operator.agent.quarantine import Quarantine

    quarantine = Quarantine(args.state_dir / "quarantine")
    if args.names:
        entries = {e.name: e for e in quarantine.entries()}  # the newest of each name wins
        unknown = [n for n in args.names if n not in entries]
        if unknown:
            raise UserFacingError(f"not in quarantine: {', '.join(unknown)} (have: {', '.join(sorted(entries))})")
        for name in args.names:
            try:
                quarantine.restore(entries[name], args.conf_dir)
            except FileExistsError as err:
                raise UserFacingError(str(err)) from err
            console.print(f"restored {name}")
        return 0
    restored, conflicts = quarantine.restore_all(args.conf_dir)
    for name in restored:
        console.print(f"restored {name}")
    for name in conflicts:
        console.print(f"[yellow]kept {name} in quarantine: {args.conf_dir} holds a file of that name[/]")
    return 1 if conflicts else 0


def _run(args: argparse.Namespace) -> int:
    import logging

    from cni_operator.operator_main import run

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return run(
        kubeconfig=args.kubeconfig,
        lease_namespace=args.lease_namespace,
        metrics_port=args.metrics_port,
        liveness_port=args.liveness_port,
    )


def _read_documents(path: Path) -> list[Any]:
    import yaml

    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except OSError as err:
        raise UserFacingError(f"{path}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise UserFacingError(f"{path}: not valid YAML: {err}") from err


def _cluster_networks(path: Path) -> list[tuple[str, Any]]:
    """(where, document) for each ClusterNetwork document in a file; other kinds are ignored, as in a GitOps repo."""
    from cni_operator.api.v1alpha1 import API_VERSION, KIND

    found = []
    for index, doc in enumerate(_read_documents(path)):
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            continue
        metadata: dict[str, Any] = doc["metadata"] if isinstance(doc.get("metadata"), dict) else {}
        name = metadata.get("name") or f"document {index + 1}"
        where = f"{path}: ClusterNetwork {name}"
        if doc.get("apiVersion") != API_VERSION:
            raise UserFacingError(f"{where}: apiVersion must be {API_VERSION}, not {doc.get('apiVersion')!r}")
        found.append((where, doc))
    return found


def _kubernetes_version(text: str, option: str = "--kubernetes-version") -> str:
    """A Kubernetes version the user wrote, as v1.36.0; UserFacingError naming the option otherwise."""
    from cni_operator.catalog.versions import parse_kubernetes_version

    try:
        major, minor, patch = parse_kubernetes_version(text, option)
    except ValueError as err:
        raise UserFacingError(str(err)) from err
    return f"v{major}.{minor}.{patch}"


def _render(args: argparse.Namespace) -> int:
    import yaml

    from cni_operator.catalog.loader import default_catalog
    from cni_operator.plan.validate import SpecError, validate
    from cni_operator.render.engine import Renderer

    catalog = default_catalog()
    version = _kubernetes_version(args.kubernetes_version) if args.kubernetes_version is not None else None
    networks = _cluster_networks(args.filename)
    if len(networks) != 1:
        raise UserFacingError(f"{args.filename}: expected one ClusterNetwork, found {len(networks)}")
    where, doc = networks[0]
    try:
        validated = validate(doc.get("spec"), catalog, kubernetes_version=version)
        if version is None:  # the newest Kubernetes the release supports; defaults that depend on it follow
            version = f"v{validated.release.compatibility.kubernetes[-1]}.0"
            validated = validate(doc.get("spec"), catalog, kubernetes_version=version)
    except SpecError as err:
        raise UserFacingError(f"{where} is invalid:\n{err}") from err
    for warning in validated.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    rendering = Renderer(catalog).render(validated, kubernetes_version=version)
    out.print(f"# revision {rendering.revision} of {validated.release.key} for Kubernetes {version}", soft_wrap=True)
    sys.stdout.flush()
    yaml.safe_dump_all(rendering.objects, sys.stdout, sort_keys=False, width=120, explicit_start=True)
    return 0


def _check_network(doc: dict[str, Any], catalog: Any, kubernetes_version: str | None) -> dict[str, Any]:
    """One ClusterNetwork document, checked: admitted by the API server? refused by the operator? warnings?"""
    from cni_operator.api.admission import name_errors
    from cni_operator.plan.validate import Problem, SpecError, Stage, validate

    metadata: dict[str, Any] = doc["metadata"] if isinstance(doc.get("metadata"), dict) else {}
    problems = [Problem(e.field, e.message, Stage.ADMISSION) for e in name_errors(metadata.get("name"))]
    warnings: list[Problem] = []
    try:
        validated = validate(doc.get("spec"), catalog, kubernetes_version=kubernetes_version)
    except SpecError as err:
        problems += err.problems
        warnings = list(err.warnings)
    else:
        warnings = list(validated.warnings)
    return {
        "name": metadata.get("name"),
        "admitted": not any(p.stage is Stage.ADMISSION for p in problems),
        "valid": not problems,
        "problems": [{"field": p.field, "message": p.message, "stage": p.stage.value} for p in problems],
        "warnings": [{"field": w.field, "message": w.message} for w in warnings],
    }


def _validate(args: argparse.Namespace) -> int:
    import json

    from cni_operator.catalog.loader import default_catalog

    catalog = default_catalog()
    version = _kubernetes_version(args.kubernetes_version) if args.kubernetes_version is not None else None
    results = []
    for path in args.filename:
        networks = _cluster_networks(path)
        if not networks and args.output == "text":
            console.print(f"[yellow]{path}: no ClusterNetwork found[/]")
        for where, doc in networks:
            result = {"file": str(path), **_check_network(doc, catalog, version)}
            results.append(result)
            if args.output == "text":
                _print_check(where, result)
    if args.output == "json":
        sys.stdout.write(json.dumps({"networks": results}, indent=2) + "\n")
    failed = [r for r in results if not r["valid"] or (args.warnings_as_errors and r["warnings"])]
    return 1 if failed else 0


def _print_check(where: str, result: dict[str, Any]) -> None:
    if result["valid"]:
        note = f" ({len(result['warnings'])} warning{'s' if len(result['warnings']) != 1 else ''})"
        console.print(f"[green]{where}: valid[/]" + (note if result["warnings"] else ""), highlight=False)
    else:
        console.print(f"[red]{where} is invalid[/]", highlight=False)
    for stage, heading in (
        ("admission", "the API server refuses it (kubectl apply fails):"),
        ("operator", "the API server stores it, and the operator refuses to roll it out:"),
    ):
        found = [p for p in result["problems"] if p["stage"] == stage]
        if found:
            console.print(f"  {heading}", highlight=False)
        for problem in found:
            console.print(f"    {problem['field']}: {problem['message']}", soft_wrap=True, highlight=False)
    for warning in result["warnings"]:
        console.print(
            f"  [yellow]warning:[/] {warning['field']}: {warning['message']}", soft_wrap=True, highlight=False
        )


def _crd(args: argparse.Namespace) -> int:
    from cni_operator.api.crd import KINDS, render_crd_yaml

    text = render_crd_yaml(KINDS[args.kind])
    if args.write:
        for path in (args.write, *args.also):
            path.write_text(text)
            console.print(f"wrote {path}")
    else:
        sys.stdout.write(text)
    return 0


def _catalog(args: argparse.Namespace) -> int:
    from cni_operator.catalog.loader import default_catalog

    table = Table(title="plugin releases")
    for column in ("plugin", "release", "Kubernetes", "status", "upgrades from"):
        table.add_column(column)
    catalog = default_catalog()
    for plugin in catalog.plugins():
        for release in catalog.releases_of(plugin):
            kube = release.compatibility.kubernetes
            table.add_row(
                plugin,
                release.version,
                f"{kube[0]}-{kube[-1]}",
                release.status.value,
                ", ".join(release.upgrade_from) or "-",
            )
    out.print(table)
    return 0


def _skew(args: argparse.Namespace) -> int:
    from cni_operator.catalog.loader import default_catalog

    catalog = default_catalog()
    if args.plugin and args.plugin not in catalog.plugins():
        known = ", ".join(catalog.plugins())
        raise UserFacingError(f"--plugin: the catalog has no plugin {args.plugin!r}; known: {known}")
    if args.kubernetes_version is not None:
        return _skew_offline(catalog, _kubernetes_version(args.kubernetes_version), args.plugin)
    return _skew_live(catalog, args.kubeconfig, args.plugin)


def _skew_offline(catalog: Any, kubernetes_version: str, plugin: str | None) -> int:
    from cni_operator.catalog.versions import parse_version
    from cni_operator.plan import skew as S

    try:
        plans = S.plan_kubernetes_upgrade(catalog, kubernetes_version)
    except ValueError as err:
        raise UserFacingError(str(err)) from err
    major, minor, _ = parse_version(kubernetes_version)
    table = Table(title=f"plugin releases on Kubernetes {major}.{minor}")
    for column in ("plugin", "release", "supports", f"on {major}.{minor}", "before the upgrade"):
        table.add_column(column)
    for plan in plans:
        release = plan.release
        if plugin and release.plugin != plugin:
            continue
        kube = release.compatibility.kubernetes
        table.add_row(
            release.plugin,
            release.version + (" (archived)" if release.status.value == "archived" else ""),
            f"{kube[0]}-{kube[-1]}",
            "[green]works[/]" if plan.works else "[red]does not work[/]",
            "-" if plan.works else plan.advice,
        )
    out.print(table)
    _, oldest = S.oldest_kubelet_minor((major, minor))
    out.print(
        f"Kubernetes' skew policy: the API server moves one minor at a time; kubelets may stay at {major}.{oldest} "
        f"to {major}.{minor} (never newer than the API server). Upgrade the plugin first where a row says so.",
        soft_wrap=True,
    )
    return 0


def _skew_live(catalog: Any, kubeconfig: str | None, plugin: str | None) -> int:
    from kubernetes import client
    from kubernetes.config import ConfigException

    from cni_operator.decide.pipeline import releases_in_use
    from cni_operator.kube.observe import Observer, active_name, network_object
    from cni_operator.plan import skew as S
    from cni_operator.plan.validate import SpecError, validate

    if not (kubeconfig or os.environ.get("KUBECONFIG") or Path.home().joinpath(".kube", "config").exists()):
        raise UserFacingError(
            "no kubeconfig: pass --kubeconfig or set KUBECONFIG, or pass --kubernetes-version V for an offline answer"
        )
    from cni_operator.kube.client import api_client

    try:
        observer = Observer(api_client(kubeconfig))
        facts = observer.cluster_facts()
        networks = observer.networks()
    except (ConfigException, OSError) as err:
        raise UserFacingError(f"cannot read the cluster from the kubeconfig: {err}") from err
    except client.ApiException as err:
        raise UserFacingError(f"the API server refused: {err.status} {err.reason}") from err

    nodes = Table(title=f"cluster: API server {facts.server_version}, {len(facts.nodes)} nodes")
    for column in ("node", "kubelet", "runtime", "os/arch", "revision"):
        nodes.add_column(column)
    for node in facts.nodes:
        platform = f"{node.os}/{node.arch}"
        nodes.add_row(node.name, node.kubelet_version, node.container_runtime_version, platform, node.revision or "-")
    out.print(nodes)

    code = 0
    if networks:
        name = active_name(networks)
        active = next(n for n in networks if n["metadata"]["name"] == name)
        try:
            validated = validate(active.get("spec"), catalog, cluster=facts)
        except SpecError as err:
            raise UserFacingError(f"ClusterNetwork {name} is invalid:\n{err}") from err
        for warning in validated.warnings:
            console.print(f"[yellow]warning:[/] {warning}", highlight=False)
        running = releases_in_use(network_object(active).status, catalog, (n.revision for n in facts.nodes))
        report = S.evaluate(
            facts,
            catalog,
            (validated.release, *validated.overlays),
            running,
            allow_unsupported=validated.spec.version_policy.allow_unsupported,
        )
        findings = Table(
            title=f"ClusterNetwork {name}: target {validated.release.key}, running "
            + (", ".join(r.key for r in running) or "nothing yet")
        )
        for column in ("kind", "severity", "release", "nodes", "what to do"):
            findings.add_column(column)
        for finding in report.findings:
            findings.add_row(
                finding.kind.value,
                "[red]Unsupported[/]" if finding.severity is S.Severity.UNSUPPORTED else "[yellow]Warning[/]",
                finding.release or "cluster",
                ", ".join(finding.nodes[:5]) + (f" (+{len(finding.nodes) - 5})" if len(finding.nodes) > 5 else ""),
                finding.message,
            )
        if report.findings:
            out.print(findings)
        colour = "green" if report.compatible else "red"
        out.print(
            f"[{colour}]Compatible={'True' if report.compatible else 'False'}[/] ({report.condition.reason}): "
            f"{report.message}",
            soft_wrap=True,
            highlight=False,
        )
        code = 0 if report.compatible else 1
    else:
        out.print("no ClusterNetwork in this cluster: the table below says which releases would suit it")

    fit = Table(title="catalog releases on this cluster")
    for column in ("plugin", "release", "suits", "why not"):
        fit.add_column(column)
    for name in catalog.plugins():
        if plugin and name != plugin:
            continue
        for release in catalog.releases_of(name):
            blocking = [f for f in S.release_findings(release, facts) if f.severity is S.Severity.UNSUPPORTED]
            fit.add_row(
                name,
                release.version,
                "[red]no[/]" if blocking else "[green]yes[/]",
                "; ".join(f.message for f in blocking) or "-",
            )
    out.print(fit)
    return code


def _add_node_arguments(parser: argparse.ArgumentParser, default_nodes: int = 3) -> None:
    parser.add_argument("--nodes", type=int, default=default_nodes, help="number of fake nodes")
    parser.add_argument(
        "--real-nodes",
        type=int,
        default=0,
        help="number of real nodes (a real kubelet and containerd each, in network namespaces of their own; root)",
    )
    parser.add_argument("--pod-cidr", default="10.244.0.0/16", help="cluster pod CIDR the node CIDRs come from")
    parser.add_argument("--node-cidr-mask", type=int, default=24, help="prefix length of each node's pod CIDR")


def _state_dir(args: argparse.Namespace) -> Path:
    from cni_operator.sandbox import default_state_dir

    return Path(args.state_dir) if args.state_dir else default_state_dir()


def _start_sandbox(args: argparse.Namespace, state_dir: Path, *, detached: bool) -> Any:
    import itertools

    from cni_operator.sandbox import Sandbox, SandboxConfig, SandboxError, fake_nodes
    from cni_operator.sandbox.nodes import node_pod_cidrs
    from cni_operator.sandbox.realnode import real_nodes

    real_count = getattr(args, "real_nodes", 0)
    try:
        nodes = fake_nodes(args.nodes, cluster_cidr=args.pod_cidr, node_mask=args.node_cidr_mask)
        cidrs = list(
            itertools.islice(node_pod_cidrs(args.pod_cidr, args.node_cidr_mask), args.nodes, args.nodes + real_count)
        )
        real = real_nodes(real_count, cidrs)
        box = Sandbox(SandboxConfig(state_dir=state_dir, nodes=nodes, detached=detached, real_nodes=real))
        what = f"{args.nodes} fake nodes" + (f" and {real_count} real nodes" if real_count else "")
        with console.status(f"starting the sandbox with {what} in {state_dir} ..."):
            box.start()
    except SandboxError as err:
        raise UserFacingError(str(err)) from err
    return box


def _sandbox_up(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    box = _start_sandbox(args, state_dir, detached=True)
    real = f" and {args.real_nodes} real nodes" if args.real_nodes else ""
    took = box.timings.get("ready", 0.0)
    console.print(
        f"[green]sandbox ready[/] in {took:.1f}s: {args.nodes} fake nodes{real}; "
        "stop it with 'cni-operator sandbox down'"
    )
    out.print(f"export KUBECONFIG={box.kubeconfig}")
    return 0


def _sandbox_down(args: argparse.Namespace) -> int:
    from cni_operator.sandbox import SandboxError
    from cni_operator.sandbox.cluster import stop_state_dir

    try:
        stopped = stop_state_dir(_state_dir(args))
    except SandboxError as err:
        raise UserFacingError(str(err)) from err
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "no sandbox process was running")
    return 0


def _sandbox_kubeconfig(args: argparse.Namespace) -> int:
    from cni_operator.sandbox import SandboxError
    from cni_operator.sandbox.cluster import read_state

    try:
        out.print(read_state(_state_dir(args))["kubeconfig"], soft_wrap=True)
    except SandboxError as err:
        raise UserFacingError(str(err)) from err
    return 0


def _sandbox_status(args: argparse.Namespace) -> int:
    import psutil

    from cni_operator.sandbox import SandboxError
    from cni_operator.sandbox.cluster import read_state, running_pids

    state_dir = _state_dir(args)
    try:
        state = read_state(state_dir)
    except SandboxError as err:
        raise UserFacingError(str(err)) from err
    if getattr(args, "real_nodes_json", False):
        import json

        from cni_operator.sandbox.realnode import status

        sys.stdout.write(json.dumps(status(state_dir), indent=2) + "\n")
        return 0
    alive = running_pids(state_dir)
    table = Table(title=f"sandbox in {state_dir}")
    for column in ("component", "pid", "state", "port", "memory (RSS)"):
        table.add_column(column)
    total = 0
    for name, pid in state["pids"].items():
        rss = psutil.Process(pid).memory_info().rss if name in alive else 0
        total += rss
        table.add_row(
            name,
            str(pid),
            "running" if name in alive else "[red]stopped[/]",
            str(state["ports"].get(name, "")),
            f"{rss / 2**20:.0f} MiB",
        )
    table.add_row("total", "", "", "", f"{total / 2**20:.0f} MiB")
    out.print(table)
    real_ok = _print_real_nodes(state_dir)
    if len(alive) == len(state["pids"]) and real_ok:
        _print_nodes(Path(state["kubeconfig"]))
        return 0
    console.print("[red]some components are not running[/]: 'cni-operator sandbox down', then 'up' again")
    return 1


def _print_real_nodes(state_dir: Path) -> bool:
    """The real nodes: processes, memory, conf dir and the CNI config their runtime loaded; False if one is down."""
    from cni_operator.sandbox.realnode import status

    rows = status(state_dir)
    if not rows:
        return True
    table = Table(title="real nodes")
    for column in ("name", "address", "pod CIDR", "processes", "memory (RSS)", "conf dir", "runtime's CNI config"):
        table.add_column(column, overflow="fold")
    healthy = True
    for row in rows:
        down = [name for name, alive in row["processes"].items() if not alive]
        healthy = healthy and not down
        if row.get("error"):
            loaded = f"[red]{row['error']}[/]"
        elif row["loaded_config"]:
            loaded = f"{row['loaded_config']} ({', '.join(row['loaded_plugins'])})"
        else:
            loaded = f"[yellow]none[/]: {row['network_message']}"
        table.add_row(
            row["name"],
            row["address"],
            row["pod_cidr"],
            "running" if not down else f"[red]stopped: {', '.join(down)}[/]",
            f"{row['rss'] / 2**20:.0f} MiB",
            row["conf_dir"],
            loaded,
        )
    out.print(table)
    return healthy


def _print_nodes(kubeconfig: Path) -> None:
    from kubernetes import client, config

    api: Any = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))  # type: ignore[no-untyped-call]
    table = Table(title="nodes")
    for column in ("name", "ready", "kubelet", "runtime", "os/arch", "pod CIDR"):
        table.add_column(column)
    for node in api.list_node().items:
        ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
        info = node.status.node_info
        table.add_row(
            node.metadata.name,
            "Ready" if ready else "[red]NotReady[/]",
            info.kubelet_version,
            info.container_runtime_version,
            f"{info.operating_system}/{info.architecture}",
            node.spec.pod_cidr or "",
        )
    out.print(table)


def _demo(args: argparse.Namespace) -> int:
    from cni_operator.demo import run_demo

    if args.keep:
        from cni_operator.sandbox import default_state_dir

        box = _start_sandbox(args, default_state_dir(), detached=True)
        return run_demo(box, console, detached=True)
    with tempfile.TemporaryDirectory(prefix="cni-operator-demo-") as tmp:
        box = _start_sandbox(args, Path(tmp), detached=False)
        try:
            code = run_demo(box, console, detached=False)
        finally:
            box.stop()
    console.print("[green]demo finished[/]; everything it started is stopped ('--keep' leaves it running)")
    return code


if __name__ == "__main__":
    sys.exit(main())
