"""Cost of the rollout planner on large clusters: one whole rollout, reconcile by reconcile, without a cluster.

    .venv/bin/python bench/rollout_plan.py --nodes 500 5000 --max-unavailable 10%

Every node passes its health gate at once, so the figures are the planner's own: reconciles a rollout takes, the
time per reconcile (median and worst), the node writes per node, and the status size of the waves it reports.
The API side (one node LIST per reconcile) is what the sandbox benchmark of 5,000 nodes will measure next.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter

from cni_operator.api.v1alpha1 import Rollout
from cni_operator.plan.rollout import NodeHealth, NodeView, RolloutSettings, plan_rollout


def run(count: int, max_unavailable: str, swap: bool) -> dict[str, object]:
    plugins = {"old": "flannel" if swap else "calico", "new": "calico"}
    settings = RolloutSettings(
        target="new", plugin_of=plugins, rollout=Rollout.model_validate({"maxUnavailable": max_unavailable})
    )
    nodes = {f"node-{i:05d}": NodeView(f"node-{i:05d}", "old") for i in range(count)}
    writes: Counter[str] = Counter()
    timings, waves_bytes, reconciles = [], 0, 0
    now = 0.0
    while True:
        health = {
            n.name: NodeHealth(ready_pods=int(n.revision == n.move.to)) for n in nodes.values() if n.move is not None
        }
        started = time.perf_counter()
        plan = plan_rollout(list(nodes.values()), health, settings, now)
        timings.append(time.perf_counter() - started)
        reconciles += 1
        shown = [{**w.__dict__, "nodes": w.nodes[:50], "size": len(w.nodes)} for w in plan.waves]  # as in status
        waves_bytes = max(waves_bytes, len(json.dumps(shown)))
        for patch in plan.patches:
            nodes[patch.node] = patch.applied_to(nodes[patch.node])
            writes[patch.node] += 1
        now += 1
        if plan.complete and not plan.patches:
            break
    return {
        "nodes": count,
        "reconciles": reconciles,
        "median_ms": round(statistics.median(timings) * 1000, 2),
        "worst_ms": round(max(timings) * 1000, 2),
        "writes_per_node": max(writes.values()),
        "waves_status_bytes": waves_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--max-unavailable", default="10%")
    parser.add_argument("--swap", action="store_true", help="a plugin swap (drain step) instead of an upgrade")
    args = parser.parse_args()
    print(f"{'nodes':>6} {'reconciles':>10} {'median ms':>10} {'worst ms':>9} {'writes/node':>11} {'waves B':>8}")
    for count in args.nodes:
        r = run(count, args.max_unavailable, args.swap)
        print(
            f"{r['nodes']:>6} {r['reconciles']:>10} {r['median_ms']:>10} {r['worst_ms']:>9} "
            f"{r['writes_per_node']:>11} {r['waves_status_bytes']:>8}"
        )


if __name__ == "__main__":
    main()
