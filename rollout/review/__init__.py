"""Look at what a change would do, without a cluster.

- `mock_runtime`: runs the real Pulumi program under the SDK's mock runtime and records it;
- `render`: one stage's desired state as files (manifests, rules, routing, dashboards);
- `plan`: the resource-level diff between two stages;
- `localstack`: the real Prometheus and Alertmanager binaries on 127.0.0.1 with a temp data dir
  (for replaying metrics, the demo and the live tests).

May import anything but `rollout.local` and `rollout.cli` (tests/test_layout.py).
"""
