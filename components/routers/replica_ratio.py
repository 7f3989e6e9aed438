"""No mesh, no gateway: one Service selecting both tracks, traffic follows the pod ratio.

Coarse by design: kube-proxy spreads connections over ready endpoints, so the canary's share is
roughly canary pods / all pods, per connection rather than per request (long-lived connections
skew it), and it moves in steps of 100/replicas percent; a stage the ratio cannot meet within
5 points is refused (rollout.model.replica_ratio_problem). The split is exported as the
effective canary percent so nobody mistakes it for the configured weight. No header routing
(kube-proxy does not read headers); `routing.sessionAffinity` keeps a client on one pod, and so
on one track, by source IP.
"""

from __future__ import annotations

import pulumi

from components.routers.base import Router, RouteTarget, Split, apex_service


class ReplicaRatioRouter(Router):
    name = "replica-ratio"
    exact = False
    weighted = False

    def sync(self, target: RouteTarget, split: Split, opts: pulumi.ResourceOptions):
        return {"service": apex_service(target, opts, session_affinity=target.routing.session_affinity)}
