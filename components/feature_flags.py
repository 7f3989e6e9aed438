"""Feature flags as an OpenFeature flagd flag-definition file in a ConfigMap, one per track.

The stable track always reads the rollback target's flags (Pulumi.stable.yaml: SPICE and
Pipelex off, fallback on), so it stays a baseline; the canary reads the stage's flags. Each
track mounts its ConfigMap as a directory (never via subPath, which would freeze the file), so a
stage change rewrites the file in place (the provider sets enableConfigMapMutable) and the flagd
provider's file watcher picks it up: flags change without touching any pod template, so no
stage change restarts a pod.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from rollout.model import FeatureFlags

FLAGD_SCHEMA = "https://flagd.dev/schema/v0/flags.json"
FLAGS_FILE = "flags.json"


def flagd_document(flags: FeatureFlags) -> dict[str, Any]:
    """Every flag as a boolean flagd flag whose default variant is the stage's value."""
    return {
        "$schema": FLAGD_SCHEMA,
        "flags": {
            name: {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": "on" if enabled else "off",
            }
            for name, enabled in sorted(flags.values.items())
        },
    }


def flagd_json(flags: FeatureFlags) -> str:
    # Sorted and indented so the ConfigMap diff between stages names the flags that changed.
    return json.dumps(flagd_document(flags), indent=2, sort_keys=True) + "\n"


def flags_config_map_name(service_name: str, track: str) -> str:
    return f"{service_name}-flags-{track}"


class FeatureFlagSet(pulumi.ComponentResource):
    """One track's flag file: a ConfigMap `<service>-flags-<track>` with `flags.json`."""

    config_map: k8s.core.v1.ConfigMap

    def __init__(
        self,
        name: str,
        service_name: str,
        track: str,
        namespace: str,
        flags: FeatureFlags,
        labels: dict[str, str],
        provider: pulumi.ProviderResource,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("genesis:rollout:FeatureFlagSet", name, None, opts)
        self.config_map_name = flags_config_map_name(service_name, track)
        self.config_map = k8s.core.v1.ConfigMap(
            f"{name}-configmap",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=self.config_map_name, namespace=namespace, labels={**labels, "track": track}
            ),
            data={FLAGS_FILE: flagd_json(flags)},
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
        )
        self.register_outputs({"configMapName": self.config_map_name})
