"""Peak memory of the sandbox control plane with N fake nodes and one DaemonSet pod per node.

    .venv/bin/python bench/sandbox_memory.py --nodes 3 100

Prints, per node count: start-up time, time until every DaemonSet pod is Ready, and the peak resident memory
(sum over etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, sampled every 0.25 s).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import psutil
from kubernetes import client

from cni_operator.sandbox import Sandbox, SandboxConfig, fake_nodes


class PeakSampler(threading.Thread):
    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak_total = 0
        self.peak_each = dict.fromkeys(pids, 0)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            total = 0
            for name, proc in self.procs.items():
                try:
                    rss = proc.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                self.peak_each[name] = max(self.peak_each[name], rss)
                total += rss
            self.peak_total = max(self.peak_total, total)
            time.sleep(0.25)


def measure(count: int, settle: float) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        started = time.monotonic()
        box = Sandbox(SandboxConfig(state_dir=Path(tmp), nodes=fake_nodes(count), startup_timeout=600))
        box.start()
        try:
            startup = time.monotonic() - started
            sampler = PeakSampler(box.pids())
            sampler.start()
            api = box.api_client()
            apps = client.AppsV1Api(api)
            labels = {"app": "bench"}
            apps.create_namespaced_daemon_set(
                "default",
                {
                    "metadata": {"name": "bench"},
                    "spec": {
                        "selector": {"matchLabels": labels},
                        "template": {
                            "metadata": {"labels": labels},
                            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
                        },
                    },
                },
            )
            ds_start = time.monotonic()
            while (apps.read_namespaced_daemon_set("bench", "default").status.number_ready or 0) < count:
                time.sleep(0.5)
            ds_ready = time.monotonic() - ds_start
            time.sleep(settle)
            sampler.stopped.set()
            sampler.join()
        finally:
            box.stop()
    each = ", ".join(f"{name} {rss / 2**20:.0f}" for name, rss in sampler.peak_each.items())
    print(
        f"nodes={count:5d}  startup={startup:6.1f}s  daemonset_ready={ds_ready:6.1f}s  "
        f"peak_rss_total={sampler.peak_total / 2**20:7.0f} MiB  ({each} MiB)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 100])
    parser.add_argument("--settle", type=float, default=20.0, help="seconds to keep sampling after the pods are Ready")
    args = parser.parse_args()
    for count in args.nodes:
        measure(count, args.settle)


if __name__ == "__main__":
    main()
