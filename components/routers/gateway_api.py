"""Gateway API HTTPRoute with two weighted backendRefs (default router).

backendRef weights are core conformance in Gateway API v1, so this works on any conformant
gateway implementation (Envoy Gateway, Istio, Cilium, GKE, ...). The Gateway named in
`routing.gateway` must allow routes from the service's namespace (`allowedRoutes`).
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.routers.base import TRACKS, Router, RouteTarget, Split

API_VERSION = "gateway.networking.k8s.io/v1"


def http_route_spec(target: RouteTarget, split: Split) -> dict:
    gateway = target.routing.gateway
    parent_ref: dict = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway.name}
    if gateway.namespace:
        parent_ref["namespace"] = gateway.namespace
    if gateway.section_name:
        parent_ref["sectionName"] = gateway.section_name
    weights = {"stable": split.stable_weight, "canary": split.canary_weight}
    return {
        "parentRefs": [parent_ref],
        "hostnames": list(target.routing.hostnames),
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": target.path_prefix}}],
                "backendRefs": [
                    {
                        "group": "",
                        "kind": "Service",
                        "name": target.track_services[track],
                        "port": target.service.port,
                        "weight": weights[track],
                    }
                    for track in TRACKS
                ],
            }
        ],
    }


class GatewayApiRouter(Router):
    name = "gateway-api"

    def sync(self, target: RouteTarget, split: Split, parent: pulumi.Resource):
        route = k8s.apiextensions.CustomResource(
            f"{target.name}-httproute",
            api_version=API_VERSION,
            kind="HTTPRoute",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=target.name, namespace=target.namespace, labels=target.labels
            ),
            spec=http_route_spec(target, split),
            opts=pulumi.ResourceOptions(parent=parent),
        )
        return {"httproute": route}
