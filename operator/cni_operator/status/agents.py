"""The node agents' reports (NodeNetworkState objects) summed up for the ClusterNetwork's status.

Drift the agent sees on a node (a hand-edited config, a replaced binary) and failing datapath checks show on the
ClusterNetwork itself, so `kubectl get cnet -o yaml` and GitOps health checks see them without looking at each node.
"""

from __future__ import annotations

from collections.abc import Mapping

from cni_operator.api.nodestate import NodeNetworkStateStatus
from cni_operator.api.v1alpha1 import AgentProblem, AgentSummary

PROBLEMS_SHOWN = 20  # enough to act on; `kubectl get nns` lists every node


def summarise(reports: Mapping[str, NodeNetworkStateStatus]) -> AgentSummary:
    """How many nodes report, how many pass their datapath check, and the first problems (drift, failing checks)."""
    reporting = passing = 0
    problems: list[AgentProblem] = []
    for node in sorted(reports):
        report = reports[node]
        reporting += 1
        datapath = report.datapath
        if datapath is not None and datapath.passed and datapath.revision == report.revision:
            passing += 1
        elif datapath is not None:
            text = f"{datapath.reason or 'Failed'}: {datapath.message}".strip(": ")
            problems.append(AgentProblem(node=node, kind="Datapath", message=text))
        problems += [AgentProblem(node=node, kind="Drift", message=d) for d in report.drift]
    return AgentSummary(reporting=reporting, datapath_passing=passing, problems=problems[:PROBLEMS_SHOWN])
