"""`cni-operator demo`: a sandbox, the operator, the Flannel example rolled out with progress bars, next steps."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cni_operator.api import v1alpha1 as api
from cni_operator.api.crd import CRD_PATH
from cni_operator.api.v1alpha1 import ClusterNetworkStatus
from cni_operator.catalog.loader import data_root, default_catalog
from cni_operator.catalog.versions import minor_of
from cni_operator.kube.apply import Applier
from cni_operator.operator_main import command as operator_command
from cni_operator.sandbox import Sandbox
from cni_operator.sandbox.cluster import STATE_FILE, free_port
from cni_operator.status.conditions import read_status

READY_TIMEOUT = 180.0


def start_operator(box: Sandbox, *, detached: bool) -> subprocess.Popen[bytes]:
    """The operator as its own process, logging next to the sandbox; recorded so 'sandbox down' stops it too."""
    log = (box.log_dir / "cni-operator.log").open("ab")
    proc = subprocess.Popen(
        operator_command(box.kubeconfig, free_port()),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=detached,
    )
    log.close()
    state_path = box.dir / STATE_FILE
    state = json.loads(state_path.read_text())
    state["pids"]["cni-operator"] = proc.pid
    state_path.write_text(json.dumps(state, indent=2))
    return proc


def run_demo(box: Sandbox, console: Console, *, detached: bool) -> int:
    """Drive the demo against a running sandbox; returns the exit code."""
    api_client = box.api_client()
    applier = Applier(api_client)
    root = data_root()
    console.print(f"[bold]1.[/] installing the ClusterNetwork CRD ({CRD_PATH})")
    applier.apply(yaml.safe_load((root / CRD_PATH).read_text()))
    _wait_established(api_client)
    console.print(f"[bold]2.[/] starting the operator: cni-operator run (log: {box.log_dir / 'cni-operator.log'})")
    operator = start_operator(box, detached=detached)
    example = root / "examples" / "flannel.yaml"
    console.print(f"[bold]3.[/] applying {example.relative_to(root)}")
    network = yaml.safe_load(example.read_text())
    # Releases that list the sandbox's Kubernetes minor: others are refused (version skew) without allowUnsupported.
    minor = minor_of(str(client.VersionApi(api_client).get_code().git_version))
    releases = default_catalog().releases_of("flannel")
    fitting = [r for r in releases if minor in r.compatibility.kubernetes] or releases[-1:]
    upgrade_to = fitting[-1].version if len(fitting) > 1 else None
    network["spec"]["version"] = fitting[-2].version if upgrade_to else fitting[-1].version
    if upgrade_to:
        console.print(f"   (at {network['spec']['version']}, so that an upgrade to {upgrade_to} is left to try)")
    else:
        console.print(f"   (at {network['spec']['version']}, the one release that supports Kubernetes {minor})")
    applier.apply(network)
    status = _follow(api_client, network["metadata"]["name"], console, operator)
    if status.phase != "Ready":
        console.print(f"[red]the rollout did not finish:[/] {status.message}")
        console.print(box.log_tail("cni-operator", 40) if (box.log_dir / "cni-operator.log").exists() else "")
        return 1
    _show_result(api_client, network["metadata"]["name"], console)
    _next_steps(box, console, detached=detached, upgrade_to=upgrade_to)
    if not detached:
        operator.terminate()
        operator.wait(timeout=30)
    return 0


def _wait_established(api_client: Any) -> None:
    ext: Any = client.ApiextensionsV1Api(api_client)
    for _ in range(100):
        conditions = ext.read_custom_resource_definition(f"{api.PLURAL}.{api.GROUP}").status.conditions or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            return
        time.sleep(0.1)


def _follow(api_client: Any, name: str, console: Console, operator: subprocess.Popen[bytes]) -> ClusterNetworkStatus:
    """Progress bars for the rollout, fed by the ClusterNetwork's status, until Ready or the timeout."""
    custom: Any = client.CustomObjectsApi(api_client)
    status = ClusterNetworkStatus()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        updated = progress.add_task("nodes on the target revision", total=None)
        ready = progress.add_task("nodes ready", total=None)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline and operator.poll() is None:
            status = read_status(
                custom.get_cluster_custom_object(api.GROUP, api.VERSION, api.PLURAL, name).get("status")
            )
            total = status.nodes.total or None
            progress.update(updated, total=total, completed=status.nodes.updated)
            progress.update(
                ready, total=total, completed=status.nodes.ready, description=f"nodes ready (phase {status.phase})"
            )
            if status.phase == "Ready" and status.observed_generation:
                break
            time.sleep(0.5)
    return status


def _show_result(api_client: Any, name: str, console: Console) -> None:
    custom: Any = client.CustomObjectsApi(api_client)
    status = custom.get_cluster_custom_object(api.GROUP, api.VERSION, api.PLURAL, name)["status"]
    table = Table(title=f"ClusterNetwork {name}")
    for column in ("condition", "status", "reason", "message"):
        table.add_column(column)
    for condition in status.get("conditions", []):
        table.add_row(condition["type"], condition["status"], condition["reason"], condition.get("message", ""))
    console.print(table)
    core: Any = client.CoreV1Api(api_client)
    events = sorted(
        (e for e in core.list_namespaced_event("default").items if e.involved_object.name == name),
        key=lambda e: e.last_timestamp or e.event_time or e.metadata.creation_timestamp,
    )
    if events:
        table = Table(title="events")
        for column in ("type", "reason", "message"):
            table.add_column(column)
        for event in events:
            table.add_row(event.type, event.reason, event.message)
        console.print(table)


def _next_steps(box: Sandbox, console: Console, *, detached: bool, upgrade_to: str | None) -> None:
    kubectl = Path(box.bin_dir) / "kubectl"
    upgrade = (
        [
            "# upgrade Flannel to the next release in the catalog (canary, then waves of nodes):",
            'kubectl patch cnet default --type merge -p \'{"spec":{"version":"' + upgrade_to + "\"}}'",
        ]
        if upgrade_to
        else []
    )
    lines = [
        f"export KUBECONFIG={box.kubeconfig}",
        f"alias kubectl={kubectl}",
        "kubectl get clusternetworks            # short name: cnet",
        *upgrade,
        "# change a setting that reaches the nodes (a new revision):",
        'kubectl patch cnet default --type merge -p \'{"spec":{"mtu":1400}}\'',
        "# swap the plugin to Calico (node by node: cordon, evict, switch, uncordon):",
        "kubectl patch cnet default --type merge -p "
        '\'{"spec":{"plugin":"calico","version":"'
        + default_catalog().latest("calico").version
        + '","networkPolicy":true}}\'',
        "kubectl describe cnet default          # conditions and events",
        "cni-operator catalog                   # every plugin release the operator knows",
        "cni-operator skew                      # does the plugin suit this cluster's versions (docs/skew.md)",
    ]
    if detached:
        lines.append("cni-operator sandbox down              # stop the sandbox and the operator")
    console.print("\n[bold]What to try next[/]" + ("" if detached else " (run the demo with --keep first)") + ":")
    for line in lines:
        console.print(f"  {line}", highlight=False, markup=False)
