"""Istio VirtualService + DestinationRule: subsets by the `track` pod label, weighted routes.

The VirtualService's host is the apex Service `<app>` (selecting both tracks); the
DestinationRule splits it into `stable` and `canary` subsets. `routing.istioGateways` lists
the gateways it binds to ('mesh' = east-west sidecar traffic); when any other gateway is
listed, `routing.hostnames` are added to the hosts for north-south traffic.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.routers.base import TRACKS, Router, RouteTarget, Split, apex_service

API_VERSION = "networking.istio.io/v1"


def service_host(target: RouteTarget) -> str:
    return f"{target.name}.{target.namespace}.svc.cluster.local"


def virtual_service_spec(target: RouteTarget, split: Split) -> dict:
    gateways = list(target.routing.istio_gateways)
    hosts = [service_host(target)]
    if any(gateway != "mesh" for gateway in gateways):
        hosts += list(target.routing.hostnames)
    weights = {"stable": split.stable_weight, "canary": split.canary_weight}
    route: dict = {
        "name": "weighted",
        "route": [
            {
                "destination": {
                    "host": service_host(target),
                    "subset": track,
                    "port": {"number": target.service.port},
                },
                "weight": weights[track],
            }
            for track in TRACKS
        ],
    }
    if target.path_prefix != "/":
        route["match"] = [{"uri": {"prefix": target.path_prefix}}]
    return {"hosts": hosts, "gateways": gateways, "http": [route]}


def destination_rule_spec(target: RouteTarget) -> dict:
    return {
        "host": service_host(target),
        "subsets": [{"name": track, "labels": {"track": track}} for track in TRACKS],
    }


class IstioRouter(Router):
    name = "istio"

    def sync(self, target: RouteTarget, split: Split, parent: pulumi.Resource):
        metadata = k8s.meta.v1.ObjectMetaArgs(
            name=target.name, namespace=target.namespace, labels=target.labels
        )
        service = apex_service(target, parent)
        rule = k8s.apiextensions.CustomResource(
            f"{target.name}-destinationrule",
            api_version=API_VERSION,
            kind="DestinationRule",
            metadata=metadata,
            spec=destination_rule_spec(target),
            opts=pulumi.ResourceOptions(parent=parent),
        )
        virtual_service = k8s.apiextensions.CustomResource(
            f"{target.name}-virtualservice",
            api_version=API_VERSION,
            kind="VirtualService",
            metadata=metadata,
            spec=virtual_service_spec(target, split),
            # subsets must exist before routes point at them
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[rule]),
        )
        return {"service": service, "destinationrule": rule, "virtualservice": virtual_service}
