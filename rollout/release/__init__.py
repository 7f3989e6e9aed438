"""The release bot and its adapters: measure -> judge -> decide -> apply -> tell.

- `bot`: one stateless tick (read the stack, re-run recent checks, decide, apply, notify);
- `prometheus`: the Prometheus HTTP API client (it talks to its server, nothing else);
- `measuring`: one check's numbers through it: gate values and the judge's counts, as plain
  measurements that `rollout.analysis` judges (one way: client -> measuring -> analysis -> bot);
- `deployer`: stages applied through Pulumi's Automation API, state read back from the stack;
- `notify`, `hooks`, `report`: Alertmanager alerts, Grafana annotations, incident/stage reports;
- `preflight`: the Day-0 go/no-go list.

May import: `rollout.model`, `rollout.config`, `rollout.analysis`, `rollout.monitoring`. Never
`rollout.local`: the production path does not load stand-ins (tests/test_layout.py).
"""
