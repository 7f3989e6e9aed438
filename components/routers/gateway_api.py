"""Gateway API HTTPRoute with two weighted backendRefs (default router).

backendRef weights are core conformance in Gateway API v1, so this works on any conformant
gateway implementation (Envoy Gateway, Istio, Cilium, GKE, ...). The Gateway named in
`routing.gateway` must allow routes from the service's namespace (`allowedRoutes`).

A first rule sends requests carrying `routing.canaryHeader` to the canary alone while it has
pods (to stable at weight 0): its match has the same path plus a header, and Gateway API gives
the match with more header matches precedence when the paths tie. Session persistence (`sessionPersistence`)
is experimental-channel only in Gateway API v1.6, so it is not used.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.routers.base import (
    TRACKS,
    Router,
    RouteTarget,
    Split,
    canary_header_match,
)

API_VERSION = "gateway.networking.k8s.io/v1"


def _backend(target: RouteTarget, track: str, weight: int) -> dict:
    return {
        "group": "",
        "kind": "Service",
        "name": target.track_services[track],
        "port": target.service.port,
        "weight": weight,
    }


def http_route_spec(target: RouteTarget, split: Split) -> dict:
    gateway = target.routing.gateway
    parent_ref: dict = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway.name}
    if gateway.namespace:
        parent_ref["namespace"] = gateway.namespace
    if gateway.section_name:
        parent_ref["sectionName"] = gateway.section_name
    path = {"type": "PathPrefix", "value": target.path_prefix}
    rules = []
    header = canary_header_match(target, split)
    if header:
        name, value, track = header
        rules.append({
            "matches": [{"path": path, "headers": [{"type": "Exact", "name": name, "value": value}]}],
            "backendRefs": [_backend(target, track, 1)],
        })
    rules.append({
        "matches": [{"path": path}],
        "backendRefs": [_backend(target, track, split.weight(track)) for track in TRACKS],
    })
    return {"parentRefs": [parent_ref], "hostnames": list(target.routing.hostnames), "rules": rules}


class GatewayApiRouter(Router):
    name = "gateway-api"

    def sync(self, target: RouteTarget, split: Split, opts: pulumi.ResourceOptions):
        route = k8s.apiextensions.CustomResource(
            f"{target.name}-httproute",
            api_version=API_VERSION,
            kind="HTTPRoute",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=target.name, namespace=target.namespace, labels=target.labels
            ),
            spec=http_route_spec(target, split),
            opts=opts,
        )
        return {"httproute": route}
