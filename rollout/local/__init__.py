"""Stand-ins for what cannot run on one machine, and the demo that ties them together.

- `synthetic`: simulated Genesis pods exporting the plan's metrics on 127.0.0.1;
- `deployer`: `LocalDeployer`, the demo's stand-in for `pulumi up` (same stage files, same
  update messages, a JSON file as the stack);
- `pulumi_standin`: a recording stand-in for the Pulumi CLI, driven by the real Automation API
  (the demo's sandbox and the deployer's tests);
- `demo`: `rollout demo`, the whole release loop with compressed time;
- `sandbox`: `rollout demo --keep`, the demo's servers and the Pulumi stand-in left running for
  the operator commands.

May import anything. Only `rollout.cli` and the tests import it, so the production path
(the bot, the program) never loads a stand-in (tests/test_layout.py).
"""
