"""The one interface every traffic router implements (after Flagger's pkg/router).

Flagger's routers sync objects, set weights and read weights back against a live cluster. Here
the program is declarative, so a router (1) decides how many pods each track runs for a weight
(`split`, from rollout.model so the bot and the config checks use the same numbers), and
(2) declares the routing objects that send that share of traffic (`sync`). The objects it
returns are the ones a stage change shifts traffic with (rollout.release.transition).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Sequence

import pulumi
import pulumi_kubernetes as k8s

from rollout.model import TRACKS, RoutingConfig, ServiceConfig, Split, split_for

__all__ = ["TRACKS", "RouteTarget", "Router", "Split", "apex_service"]


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


class Router(ABC):
    name: ClassVar[str]
    exact: ClassVar[bool] = True  # False when the traffic share only approximates the weight
    # True when route objects carry the weights; False when traffic follows the pod ratio
    weighted: ClassVar[bool] = True

    def split(self, replicas: int, weight: int) -> Split:
        return split_for(self.name, replicas, weight)

    @abstractmethod
    def sync(
        self,
        target: RouteTarget,
        split: Split,
        opts: pulumi.ResourceOptions,
    ) -> dict[str, pulumi.CustomResource]:
        """Declare the routing objects with these options (parent, provider, depends_on), keyed by
        a short role name."""

    def weight_objects(self, routes: dict[str, pulumi.CustomResource]) -> Sequence[pulumi.CustomResource]:
        """The objects whose inputs change when the weights do (what a traffic shift updates)."""
        return list(routes.values()) if self.weighted else []


def canary_header_match(target: RouteTarget, split: Split) -> tuple[str, str, str] | None:
    """(header, value, track) pinning a request to the canary while it has pods; to stable at
    weight 0, so the route keeps its shape across stages and a pinned request never fails."""
    header = target.routing.canary_header
    if header is None:
        return None
    return header.name, header.value, "canary" if split.canary_replicas else "stable"


def apex_service(target: RouteTarget, opts: pulumi.ResourceOptions, session_affinity: bool = False) -> k8s.core.v1.Service:
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
            session_affinity="ClientIP" if session_affinity else None,
            ports=[
                k8s.core.v1.ServicePortArgs(name="http", port=port, target_port="http", protocol="TCP")
            ],
        ),
        opts=opts,
    )
