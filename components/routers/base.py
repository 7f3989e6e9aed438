"""The one interface every traffic router implements (after Flagger's pkg/router).

Flagger's routers sync objects, set weights and read weights back against a live cluster. Here
the program is declarative, so a router (1) decides how many pods each track runs for a weight
(`split`), and (2) declares the routing objects that send that share of traffic (`sync`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import pulumi
import pulumi_kubernetes as k8s

from rollout.model import RoutingConfig, ServiceConfig

TRACKS = ("stable", "canary")


@dataclass(frozen=True)
class Split:
    """Pods per track and the traffic share each track actually gets, in percent."""

    stable_replicas: int
    canary_replicas: int
    stable_weight: int
    canary_weight: int


@dataclass(frozen=True)
class RouteTarget:
    """What a router routes: one service's two tracks, each behind its own Service."""

    service: ServiceConfig
    routing: RoutingConfig
    labels: dict[str, str]  # common object labels
    track_services: dict[str, str]  # track -> Kubernetes Service name
    path_prefix: str = "/"

    @property
    def name(self) -> str:
        return self.service.name

    @property
    def namespace(self) -> str:
        return self.service.namespace


def weighted_split(replicas: int, weight: int) -> Split:
    """Routers that split traffic by weight: stable keeps all its pods in every stage (so it can
    take 100% back at once), canary gets pods in proportion to its share (none at weight 0)."""
    canary = 0 if weight == 0 else max(1, math.ceil(replicas * weight / 100))
    return Split(replicas, canary, 100 - weight, weight)


class Router(ABC):
    name: ClassVar[str]
    exact: ClassVar[bool] = True  # False when the traffic share only approximates the weight

    def split(self, replicas: int, weight: int) -> Split:
        return weighted_split(replicas, weight)

    @abstractmethod
    def sync(
        self, target: RouteTarget, split: Split, parent: pulumi.Resource
    ) -> dict[str, pulumi.CustomResource]:
        """Declare the routing objects (children of `parent`), keyed by a short role name."""


def apex_service(target: RouteTarget, parent: pulumi.Resource) -> k8s.core.v1.Service:
    """A Service named after the app selecting both tracks (Istio host, replica-ratio entry)."""
    port = target.service.port
    return k8s.core.v1.Service(
        f"{target.name}-service",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=target.name, namespace=target.namespace, labels=target.labels
        ),
        spec=k8s.core.v1.ServiceSpecArgs(
            type="ClusterIP",
            selector={"app": target.name},
            ports=[
                k8s.core.v1.ServicePortArgs(name="http", port=port, target_port="http", protocol="TCP")
            ],
        ),
        opts=pulumi.ResourceOptions(parent=parent),
    )
