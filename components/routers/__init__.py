"""Traffic routers behind one interface; `router_for` picks one by `routing.router`."""

from __future__ import annotations

from components.routers.base import Router, RouteTarget, Split
from components.routers.gateway_api import GatewayApiRouter
from components.routers.istio import IstioRouter
from components.routers.replica_ratio import ReplicaRatioRouter

ROUTERS: dict[str, type[Router]] = {
    router.name: router for router in (GatewayApiRouter, IstioRouter, ReplicaRatioRouter)
}


def router_for(name: str) -> Router:
    try:
        return ROUTERS[name]()
    except KeyError:
        raise ValueError(f"unknown router {name!r}; known routers: {sorted(ROUTERS)}") from None


__all__ = ["ROUTERS", "RouteTarget", "Router", "Split", "router_for"]
