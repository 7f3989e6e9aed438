"""Judging, pure: metrics in, verdict out. No I/O, no clock, no network.

- `signals`: the recording rule behind every gate (the alert, the panel and the bot read it);
- `gates`: one check, every gate of a stage on measured values -> pass / hold / fail;
- `decision`: the checks over time -> promote / rollback / complete / wait.

May import: the standard library, pydantic, `rollout.model` and this package. Nothing from
`release`, `monitoring`, `review`, `local`, `cli` or `components` (tests/test_layout.py).
"""
