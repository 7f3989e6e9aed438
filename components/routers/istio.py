"""Istio VirtualService + DestinationRule: subsets by the `track` pod label, weighted routes.

The VirtualService's host is the apex Service `<app>` (selecting both tracks); the
DestinationRule splits it into `stable` and `canary` subsets. `routing.istioGateways` lists
the gateways it binds to ('mesh' = east-west sidecar traffic); when any other gateway is
listed, `routing.hostnames` are added to the hosts for north-south traffic. Requests carrying
`routing.canaryHeader` match a first route to the canary subset (stable at weight 0).

No session affinity across tracks: Istio picks the weighted subset per request before any
consistent-hash policy applies (istio/istio#9764). Sidecar injection's istio-init container
needs NET_ADMIN, which the restricted Pod Security Standard forbids: use Istio CNI or ambient
mode in such namespaces (docs/stack.md).
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.routers.base import (
    TRACKS,
    Router,
    RouteTarget,
    Split,
    apex_service,
    canary_header_match,
)

API_VERSION = "networking.istio.io/v1"


def service_host(target: RouteTarget) -> str:
    return f"{target.name}.{target.namespace}.svc.cluster.local"


def _destination(target: RouteTarget, track: str, weight: int) -> dict:
    return {
        "destination": {
            "host": service_host(target),
            "subset": track,
            "port": {"number": target.service.port},
        },
        "weight": weight,
    }


def virtual_service_spec(target: RouteTarget, split: Split) -> dict:
    gateways = list(target.routing.istio_gateways)
    hosts = [service_host(target)]
    if any(gateway != "mesh" for gateway in gateways):
        hosts += list(target.routing.hostnames)
    path = [{"uri": {"prefix": target.path_prefix}}] if target.path_prefix != "/" else []
    routes = []
    header = canary_header_match(target, split)
    if header:
        name, value, track = header
        match = {"headers": {name: {"exact": value}}}
        if path:
            match.update(path[0])
        routes.append({"name": "canary-by-header", "match": [match], "route": [_destination(target, track, 100)]})
    weighted: dict = {"name": "weighted", "route": [_destination(target, t, split.weight(t)) for t in TRACKS]}
    if path:
        weighted["match"] = path
    routes.append(weighted)
    return {"hosts": hosts, "gateways": gateways, "http": routes}


def destination_rule_spec(target: RouteTarget) -> dict:
    return {
        "host": service_host(target),
        "subsets": [{"name": track, "labels": {"track": track}} for track in TRACKS],
    }


class IstioRouter(Router):
    name = "istio"

    def sync(self, target: RouteTarget, split: Split, opts: pulumi.ResourceOptions):
        metadata = k8s.meta.v1.ObjectMetaArgs(
            name=target.name, namespace=target.namespace, labels=target.labels
        )
        service = apex_service(target, opts)
        rule = k8s.apiextensions.CustomResource(
            f"{target.name}-destinationrule",
            api_version=API_VERSION,
            kind="DestinationRule",
            metadata=metadata,
            spec=destination_rule_spec(target),
            opts=opts,
        )
        virtual_service = k8s.apiextensions.CustomResource(
            f"{target.name}-virtualservice",
            api_version=API_VERSION,
            kind="VirtualService",
            metadata=metadata,
            spec=virtual_service_spec(target, split),
            # subsets must exist before routes point at them
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[rule])),
        )
        return {"service": service, "destinationrule": rule, "virtualservice": virtual_service}

    def weight_objects(self, routes):
        return [routes["virtualservice"]]
