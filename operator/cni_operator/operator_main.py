"""`cni-operator run`: leader election, metrics, the reconcile worker, then kopf."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kopf
from prometheus_client import start_http_server

from cni_operator.catalog.loader import default_catalog
from cni_operator.kube.client import api_client
from cni_operator.kube.leader import LeaseLock
from cni_operator.kube.reconcile import Reconciler

log = logging.getLogger(__name__)
APPLY_DELAY_ENV = "CNI_OPERATOR_TEST_APPLY_DELAY"


def command(kubeconfig: Path, metrics_port: int, lease_namespace: str | None = None) -> list[str]:
    """How to start `cni-operator run` as a child process of this Python (for the demo and the tests)."""
    args = [
        sys.executable,
        "-m",
        "cni_operator.cli",
        "run",
        "--kubeconfig",
        str(kubeconfig),
        "--metrics-port",
        str(metrics_port),
    ]
    return args + (["--lease-namespace", lease_namespace] if lease_namespace else [])


def run(
    *,
    kubeconfig: str | None,
    lease_namespace: str,
    metrics_port: int,
    liveness_port: int | None = None,
    identity: str | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Run until stopped (Ctrl-C, SIGTERM, `stop`) or until leadership is lost (exit code 1)."""
    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig  # kopf's own login reads it
    stop = stop or threading.Event()
    client = api_client(kubeconfig)
    if metrics_port:
        start_http_server(metrics_port, addr="0.0.0.0")  # noqa: S104 (scraped from other pods)
    identity = identity or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    lease = LeaseLock(client, identity, namespace=lease_namespace)
    log.info("waiting for leadership as %s", identity)
    if not lease.acquire(stop):
        return 0

    from cni_operator.handlers import clusternetwork

    queue = clusternetwork.ReconcileQueue(Reconciler(client, default_catalog(), before_apply=_apply_fault()))
    registry = clusternetwork.register(queue, kopf.OperatorRegistry())
    queue.start()
    stopped = threading.Event()
    renewer = threading.Thread(target=lease.keep_renewing, args=(stopped,), name="lease", daemon=True)
    renewer.start()
    liveness = f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None
    try:
        asyncio.run(_kopf(registry, triggers=(stop, lease.lost), stopped=stopped, liveness=liveness))
    finally:
        stopped.set()
        queue.stop()
        if not lease.lost.is_set():
            lease.release()
    return 1 if lease.lost.is_set() else 0


def _apply_fault() -> Callable[[dict[str, Any]], None] | None:
    """Fault injection for crash tests, set by the test that starts this process: every apply waits this long,
    so the test can kill the operator between two of them."""
    delay = float(os.environ.get(APPLY_DELAY_ENV, "0") or 0)
    if not delay:
        return None
    return lambda _obj: time.sleep(delay)


async def _kopf(
    registry: kopf.OperatorRegistry,
    *,
    triggers: tuple[threading.Event, ...],
    stopped: threading.Event,
    liveness: str | None,
) -> None:
    """kopf in our own loop, stopped by an asyncio flag: kopf handles SIGTERM and SIGINT itself, and a
    thread-based flag would leave an executor thread behind that keeps the process from exiting."""
    flag = asyncio.Event()
    loop = asyncio.get_running_loop()

    def watch() -> None:
        while not stopped.wait(0.2):
            if any(t.is_set() for t in triggers):
                loop.call_soon_threadsafe(flag.set)
                return

    threading.Thread(target=watch, name="stop-watch", daemon=True).start()
    await kopf.operator(
        registry=registry, clusterwide=True, standalone=True, stop_flag=flag, liveness_endpoint=liveness
    )
