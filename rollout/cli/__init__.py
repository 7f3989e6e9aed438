"""`rollout`: the command line of the Genesis rollout stack.

Exit codes: 0 ok / pass, 1 fail (a gate breached its critical threshold), 2 hold,
3 error (bad config, Prometheus or Pulumi unreachable). Heavy modules are imported inside
commands so `rollout --help` and `rollout check` start fast.
"""

from __future__ import annotations

import inspect
import os

from rollout.cli.common import app, json_errors

# each module registers its commands on `app`, in the order `rollout --help` lists them
# isort: off
from rollout.cli import analysis, status, release, review, local  # noqa: F401,E402
# isort: on

# one convention for every command with --json: its errors are JSON too
for _command in app.registered_commands:
    _command.callback = json_errors(_command.callback)
    # an on/off flag takes no value: its help says what it does, no `<bool>` type beside it
    for _parameter in inspect.signature(_command.callback).parameters.values():
        if _parameter.annotation in (bool, "bool") and getattr(_parameter.default, "metavar", 0) is None:
            _parameter.default.metavar = ""

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover - console entry point
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
