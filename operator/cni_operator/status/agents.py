"""The node agents' reports (NodeNetworkState objects) summed up for the ClusterNetwork's status.

Drift the agent sees on a node (a hand-edited config, a replaced binary) and failing datapath checks show on the
ClusterNetwork itself, so `kubectl get cnet -o yaml` and GitOps health checks see them without looking at each node.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

PROBLEMS_SHOWN = 20  # enough to act on; `kubectl get nns` lists every node


def summarise(reports: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """{reporting, datapathPassing, problems: [{node, kind, message}]} for status.agents."""
    reporting = passing = 0
    problems: list[dict[str, str]] = []
    for report in sorted(reports, key=lambda r: str(r.get("metadata", {}).get("name", ""))):
        node = str(report.get("metadata", {}).get("name", ""))
        status = report.get("status") or {}
        reporting += 1
        datapath = status.get("datapath") or {}
        if datapath.get("passed") and datapath.get("revision") == status.get("revision"):
            passing += 1
        elif datapath:
            problems.append(
                {
                    "node": node,
                    "kind": "Datapath",
                    "message": f"{datapath.get('reason', 'Failed')}: {datapath.get('message', '')}".strip(": "),
                }
            )
        for drift in status.get("drift") or []:
            problems.append({"node": node, "kind": "Drift", "message": str(drift)})
    return {"reporting": reporting, "datapathPassing": passing, "problems": problems[:PROBLEMS_SHOWN]}
