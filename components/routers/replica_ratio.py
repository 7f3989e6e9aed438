"""No mesh, no gateway: one Service selecting both tracks, traffic follows the pod ratio.

Coarse by design: kube-proxy spreads connections over ready endpoints, so the canary's share is
roughly canary pods / all pods, per connection rather than per request (long-lived connections
skew it), and it moves in steps of 100/replicas percent. The split is exported as the
effective canary percent so nobody mistakes it for the configured weight.
"""

from __future__ import annotations

import pulumi

from components.routers.base import Router, RouteTarget, Split, apex_service


def ratio_split(replicas: int, weight: int) -> Split:
    """Pods in proportion to the weight; both tracks keep a pod unless the weight is 0 or 100."""
    if weight == 0:
        canary = 0
    elif weight == 100:
        canary = replicas
    else:
        canary = min(max(1, round(replicas * weight / 100)), replicas - 1) if replicas > 1 else 1
    stable = replicas - canary
    effective = round(100 * canary / replicas)
    return Split(stable, canary, 100 - effective, effective)


class ReplicaRatioRouter(Router):
    name = "replica-ratio"
    exact = False

    def split(self, replicas: int, weight: int) -> Split:
        return ratio_split(replicas, weight)

    def sync(self, target: RouteTarget, split: Split, parent: pulumi.Resource):
        return {"service": apex_service(target, parent)}
