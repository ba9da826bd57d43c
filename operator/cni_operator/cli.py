"""`cni-operator`: the operator's command line."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=True)
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

    demo = commands.add_parser("demo", help="bring up a sandbox and show the operator at work")
    _add_node_arguments(demo, default_nodes=3)
    demo.add_argument("--keep", action="store_true", help="leave the sandbox running afterwards")
    demo.set_defaults(handler=_demo)
    return parser


def _add_node_arguments(parser: argparse.ArgumentParser, default_nodes: int = 3) -> None:
    parser.add_argument("--nodes", type=int, default=default_nodes, help="number of fake nodes")
    parser.add_argument("--pod-cidr", default="10.244.0.0/16", help="cluster pod CIDR the node CIDRs come from")
    parser.add_argument("--node-cidr-mask", type=int, default=24, help="prefix length of each node's pod CIDR")


def _state_dir(args: argparse.Namespace) -> Path:
    from cni_operator.sandbox import default_state_dir

    return Path(args.state_dir) if args.state_dir else default_state_dir()


def _start_sandbox(args: argparse.Namespace, state_dir: Path, *, detached: bool) -> Any:
    from cni_operator.sandbox import Sandbox, SandboxConfig, SandboxError, fake_nodes

    try:
        nodes = fake_nodes(args.nodes, cluster_cidr=args.pod_cidr, node_mask=args.node_cidr_mask)
        box = Sandbox(SandboxConfig(state_dir=state_dir, nodes=nodes, detached=detached))
        with console.status(f"starting the sandbox with {args.nodes} fake nodes in {state_dir} ..."):
            box.start()
    except SandboxError as err:
        raise UserFacingError(str(err)) from err
    return box


def _sandbox_up(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    box = _start_sandbox(args, state_dir, detached=True)
    console.print(f"[green]sandbox ready[/]: {args.nodes} nodes; stop it with 'cni-operator sandbox down'")
    out.print(f"export KUBECONFIG={box.kubeconfig}")
    return 0


def _sandbox_down(args: argparse.Namespace) -> int:
    from cni_operator.sandbox.cluster import stop_state_dir

    stopped = stop_state_dir(_state_dir(args))
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
    if len(alive) == len(state["pids"]):
        _print_nodes(Path(state["kubeconfig"]))
        return 0
    console.print("[red]some components are not running[/]: 'cni-operator sandbox down', then 'up' again")
    return 1


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
    if args.keep:
        from cni_operator.sandbox import default_state_dir

        box = _start_sandbox(args, default_state_dir(), detached=True)
        _print_nodes(box.kubeconfig)
        console.print(f"left running: export KUBECONFIG={box.kubeconfig}; stop with 'cni-operator sandbox down'")
        return 0
    with tempfile.TemporaryDirectory(prefix="cni-operator-demo-") as tmp:
        box = _start_sandbox(args, Path(tmp), detached=False)
        try:
            _print_nodes(box.kubeconfig)
        finally:
            box.stop()
    console.print("[green]demo finished[/]; the sandbox is stopped ('--keep' leaves it running)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
