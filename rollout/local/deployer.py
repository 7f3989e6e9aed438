"""A deployer for one machine with no cluster: the demo's stand-in for `pulumi up`.

It stands in for the Pulumi CLI and Kubernetes, which cannot run here, and keeps their
contract: a stage is applied only after its stage file validates (the same loader as the
program), the "stack" keeps outputs (`stage`, `weight`) and an update history with the bot's
messages in a JSON file, and applying a stage hands the validated stage to `on_apply`, which
shifts the synthetic traffic and reloads the stage's alert rules, as `pulumi up` would update
the route weights and the PrometheusRule.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from rollout.config import load_stack_config
from rollout.model import StackConfig
from rollout.release.deployer import (
    ApplyResult,
    DeployedState,
    DeployerError,
    StaleStateError,
    action_for,
    parse_update_message,
    update_message,
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class LocalDeployer:
    def __init__(
        self,
        project_dir: Path | str,
        state_file: Path | str,
        on_apply: Callable[[StackConfig], None],
        *,
        load: Callable[[Path, str], StackConfig] = load_stack_config,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.project_dir = Path(project_dir)
        self.state_file = Path(state_file)
        self.on_apply = on_apply
        self.load = load
        self.clock = clock

    def _read(self) -> dict:
        if not self.state_file.exists():
            return {"outputs": {}, "history": [], "tags": {}}
        return {"tags": {}, **json.loads(self.state_file.read_text())}

    def _write(self, state: dict) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state, indent=2))

    def set_tag(self, key: str, value: str) -> None:
        state = self._read()
        state["tags"][key] = value
        self._write(state)

    def remove_tag(self, key: str) -> None:
        state = self._read()
        state["tags"].pop(key, None)
        self._write(state)

    def history(self) -> list[dict]:
        """Updates, newest first, as `pulumi stack history` lists them."""
        return list(reversed(self._read()["history"]))

    def current(self) -> DeployedState:
        state = self._read()
        outputs = state["outputs"]
        if "stage" not in outputs:
            raise DeployerError(f"{self.state_file}: no stage applied yet")
        since = None
        for entry in reversed(state["history"]):  # newest first; oldest of the latest run
            parsed = parse_update_message(entry["message"])
            if not parsed or parsed.target != outputs["stage"]:
                break
            since = entry
        if since is None:
            raise DeployerError(f"{self.state_file}: no update applied stage {outputs['stage']!r}")
        head = state["history"][-1]
        return DeployedState(
            stage=outputs["stage"],
            weight=outputs["weight"],
            since=datetime.fromisoformat(since["end"]),
            update_version=since["version"],
            message=since["message"],
            tags=dict(state["tags"]),
            head_version=head["version"],
            head_message=head["message"],
            head_finished=datetime.fromisoformat(head["end"]),
        )

    def tags(self) -> dict[str, str]:
        return dict(self._read()["tags"])

    def apply(
        self, stage_name: str, message: str, *, source: str | None = None, expect_head: int | None = None,
        action: str | None = None,
    ) -> ApplyResult:
        """One update (the stand-in has no phases, so it is never left between two);
        compare-and-apply like PulumiDeployer."""
        config = self.load(self.project_dir, stage_name)  # a bad stage file stops here
        state = self._read()
        head = state["history"][-1]["version"] if state["history"] else None
        if expect_head is not None and head != expect_head:
            raise StaleStateError(f"the stack changed after this decision (update {head}, not {expect_head})")
        previous = state["outputs"]
        composed = action is None and parse_update_message(message) is not None
        action = action or action_for(previous.get("weight"), config.stage.weight)
        text = message if composed else update_message(action, source or previous.get("stage"), stage_name, message)
        started = self.clock()
        self.on_apply(config)
        finished = self.clock()
        version = len(state["history"]) + 1
        state["outputs"] = {"stage": stage_name, "weight": config.stage.weight}
        state["history"].append(
            {"version": version, "message": text, "start": started.isoformat(), "end": finished.isoformat()}
        )
        self._write(state)
        return ApplyResult(
            stage=stage_name,
            weight=config.stage.weight,
            action=action,
            previous_stage=previous.get("stage"),
            message=text,
            version=version,
            started=started,
            finished=finished,
        )

    def preview(self, stage_name: str) -> str:
        config = self.load(self.project_dir, stage_name)
        current = self._read()["outputs"]
        return f"weight {current.get('weight')} -> {config.stage.weight} (stage {stage_name})"
