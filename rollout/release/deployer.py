"""Apply a stage to the one `prod` stack through Pulumi's Automation API, and read it back.

`pulumi up --stack prod --config-file Pulumi.<stage>.yaml` is the whole deployment: promotion
and rollback are the same command with another stage file. The bot keeps no state of its own:
- the deployed stage and weight are the stack outputs `stage` and `weight` (the program exports them);
- when that stage started is read from the stack's update history, whose messages this module
  writes in a parseable form: `rollout: promote canary -> gradual: <reason>`.
So the stack's update history is the audit trail, and a restarted bot sees what is deployed.

A stage's hold (and the judge's evidence) runs from when the canary became what it is now: a
hand `pulumi up` that changes the canary's image or pod template mid-stage restarts it. The
program exports the canary's identity (`services.<name>.canaryImage`, `.canaryTemplate`); the
stack tag `rollout:canary` notes `<update version> <identity>`, the update from which the canary
has been the same. Without a matching note, the newest hand update within the stage counts as
the change (the earliest moment that is certainly after it).

A stage change is applied in phases (rollout.release.transition: scale up, shift, wait, scale
down), each an update whose message carries its place, `rollout: rollback majority -> stable
[1/2 shift]: <reason>`. A stage starts when its last phase is done; a stack whose newest
update is an earlier phase is in the middle of a stage change (`DeployedState.pending`), which
the bot finishes before anything else.

Safety: a locked stack (another update running) raises `StackLockedError` and is never retried
here: a retry could apply a stage twice or on top of someone else's change. The next tick
re-reads the state and decides again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from rollout.config import load_release_lenient, load_stack_config, project_name, stage_file
from rollout.model import Release, Stage
from rollout.release.notify import NotifyError, read_token
from rollout.release.report import redact
from rollout.release.transition import (
    MissingResources,
    Phase,
    phase_urns,
    plan_transition,
)

log = logging.getLogger("rollout.deployer")

PULUMI_INSTALL_URL = "https://www.pulumi.com/docs/iac/download-install/"
DEFAULT_STACK = "prod"
MESSAGE_PREFIX = "rollout:"
CANARY_TAG = "rollout:canary"  # "<version> <identity>": the update from which the canary is unchanged
# rollout: <action> [<from> ]-> <to>[ [<k>/<n> <phase>]]: <reason>
_MESSAGE = re.compile(
    r"^rollout: (?P<action>[a-z-]+) (?:(?P<source>[a-z0-9-]+) )?-> (?P<target>[a-z0-9-]+)"
    r"(?: \[(?P<phase>\d+)/(?P<phases>\d+) (?P<phase_name>[a-z-]+)\])?(?:: (?P<reason>.*))?$",
    re.DOTALL,
)


class DeployerError(RuntimeError):
    """The deployment could not be done or read; the message says what to do."""


class StackLockedError(DeployerError):
    """Another update holds the stack lock. Nothing was applied; do not retry blindly."""


class StaleStateError(DeployerError):
    """The stack changed after the decision was made (compare-and-apply): nothing was applied."""


@dataclass(frozen=True)
class UpdateMessage:
    action: str
    source: str | None
    target: str
    reason: str
    phase: int = 1
    phases: int = 1

    @property
    def final(self) -> bool:
        """The last (or only) update of a stage change."""
        return self.phase >= self.phases


@dataclass(frozen=True)
class DeployedState:
    stage: str
    weight: int
    since: datetime  # when the update that put this stage in place finished (UTC)
    update_version: int | None = None  # the stack history version of that update
    message: str = ""
    pending: UpdateMessage | None = None  # a stage change stopped between its phases
    tags: Mapping[str, str] = field(default_factory=dict)  # stack tags: the bot's notes on the stack
    # the newest successful update of any kind: what a decision is compared against before it applies
    head_version: int | None = None
    head_message: str = ""
    head_finished: datetime | None = None
    # the canary changed mid-stage (a hand update): `since` is that update, not the stage's start
    canary_changed: HistoryEntry | None = None
    canary_note: str | None = None  # the rollout:canary tag value that describes this state


@dataclass(frozen=True)
class ApplyResult:
    stage: str
    weight: int
    action: str  # promote | rollback | apply
    previous_stage: str | None
    message: str  # the update message recorded in the stack history
    version: int | None = None
    started: datetime | None = None
    finished: datetime | None = None
    resource_changes: Mapping[str, int] = field(default_factory=dict)
    phases: tuple[str, ...] = ()  # the update message of every phase applied, in order
    events: tuple[tuple[datetime, str], ...] = ()  # each phase as it happened: (UTC time, what)


class Deployer(Protocol):
    """What the bot needs from a deployment target."""

    def current(self) -> DeployedState: ...

    def apply(
        self, stage_name: str, message: str, *, source: str | None = None, expect_head: int | None = None,
        action: str | None = None,
    ) -> ApplyResult:
        """Apply a stage; `source` finishes an interrupted change from that stage; with
        `expect_head`, refuse (StaleStateError) if the stack's newest update is another one;
        with `action`, `message` is the reason as given (never read as a composed message)."""
        ...

    def preview(self, stage_name: str) -> str: ...

    def tags(self) -> dict[str, str]:
        """The stack tags now (the operator controls, read again right before a promotion)."""
        ...

    def set_tag(self, key: str, value: str) -> None:
        """Keep a note with the stack (operator state, what was already notified)."""
        ...

    def remove_tag(self, key: str) -> None: ...


# --------------------------------------------------------------------------- update messages


def update_message(action: str, source: str | None, target: str, reason: str, marker: str = "") -> str:
    """The stack-history message for a stage change, e.g. `rollout: promote canary -> gradual: ...`,
    with the phase marker (`[1/2 scale-up]`) of a phased change. Credentials pasted into a reason
    never reach the stack's history."""
    reason = redact(" ".join(reason.split())) or "no reason given"
    arrow = f"{source} -> {target}" if source else f"-> {target}"
    return f"{MESSAGE_PREFIX} {action} {arrow}{' ' + marker if marker else ''}: {reason}"


def parse_update_message(message: str | None) -> UpdateMessage | None:
    """The stage change a message records, or None when it was not written by the bot."""
    match = _MESSAGE.match((message or "").strip())
    if not match:
        return None
    return UpdateMessage(
        action=match["action"],
        source=match["source"],
        target=match["target"],
        reason=match["reason"] or "",
        phase=int(match["phase"] or 1),
        phases=int(match["phases"] or 1),
    )


def action_for(previous_weight: int | None, weight: int) -> str:
    if previous_weight is None or previous_weight == weight:
        return "apply"
    return "promote" if weight > previous_weight else "rollback"


# --------------------------------------------------------------------------- history


@dataclass(frozen=True)
class HistoryEntry:
    """The parts of one stack-history update the bot reads (newest first in a history)."""

    version: int | None
    kind: str
    result: str
    message: str
    config: Mapping[str, Any]  # key -> raw value as the CLI reports it
    start_time: datetime
    end_time: datetime | None


def stage_of_update(entry: HistoryEntry, namespace: str) -> str | None:
    """Which stage an update applied: from the bot's message, else from the update's config."""
    parsed = parse_update_message(entry.message)
    if parsed:
        return parsed.target
    raw = entry.config.get(f"{namespace}:stage")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if isinstance(raw, Mapping) and isinstance(raw.get("name"), str):
        return raw["name"]
    return None


def _succeeded(history: Sequence[HistoryEntry]) -> list[HistoryEntry]:
    # failed updates changed nothing that counts, and other kinds (refresh) apply no stage
    return [e for e in history if e.kind == "update" and e.result == "succeeded"]


def stage_since(history: Sequence[HistoryEntry], stage: str, namespace: str) -> HistoryEntry | None:
    """The successful update that put `stage` in place: the oldest *final* update of the newest
    unbroken run of successful updates applying that stage (re-applying a stage does not restart
    its hold; the earlier phases of a stage change come before its start). None when the run
    holds no final update: the change into `stage` is still under way."""
    found: HistoryEntry | None = None
    for entry in _succeeded(history):  # newest first
        if stage_of_update(entry, namespace) != stage:
            break
        parsed = parse_update_message(entry.message)
        if parsed is None or parsed.final:
            found = entry
    return found


def pending_change(history: Sequence[HistoryEntry]) -> UpdateMessage | None:
    """The stage change whose newest update was an earlier phase: it stopped half way."""
    succeeded = _succeeded(history)
    parsed = parse_update_message(succeeded[0].message) if succeeded else None
    return parsed if parsed is not None and not parsed.final else None


def canary_identity(services: Any) -> str | None:
    """The canary's identity from the stack output `services`: a hash of every service's canary
    image and pod-template id; None when the outputs do not say (an older program)."""
    if not isinstance(services, Mapping):
        return None
    parts = {name: [s.get("canaryImage"), s.get("canaryTemplate")] for name, s in services.items() if isinstance(s, Mapping)}
    if not any(value for pair in parts.values() for value in pair):
        return None
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def canary_since(
    history: Sequence[HistoryEntry], stage_entry: HistoryEntry, identity: str | None, note: str | None
) -> HistoryEntry | None:
    """The update from which the canary has been what it is now, when that is later than the
    stage's start (`stage_entry`); None when the canary has not changed during the stage."""
    later = [e for e in _succeeded(history) if (e.version or 0) > (stage_entry.version or 0)]
    if identity is None or not later:
        return None
    noted_version, _, noted_identity = (note or "").partition(" ")
    if noted_identity == identity:  # unchanged since the noted update
        return next((e for e in later if str(e.version) == noted_version), None)
    # changed, or never noted: the newest update within the stage that the bot did not make
    return next((e for e in later if parse_update_message(e.message) is None), None)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# --------------------------------------------------------------------------- Pulumi


class PulumiDeployer:
    """Deploys stage files to one stack of the local project with the Automation API.

    `pulumi_root`: directory holding `bin/pulumi` (default: `pulumi` on PATH);
    `pulumi_command`: an already built `pulumi.automation.PulumiCommand` (wins over the root);
    `env`: extra environment for every CLI call (e.g. PULUMI_BACKEND_URL), never logged.
    """

    def __init__(
        self,
        project_dir: Path | str,
        stack_name: str = DEFAULT_STACK,
        *,
        pulumi_root: Path | str | None = None,
        pulumi_command: Any | None = None,
        env: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        progress: Callable[[datetime, str], None] | None = None,
    ) -> None:
        self.project_dir = Path(project_dir).resolve()
        self.progress = progress  # told of each phase as it happens (the CLI prints it)
        self.stack_name = stack_name
        self._sleep = sleep  # the scale-down delay between phases
        self._pulumi_root = str(pulumi_root) if pulumi_root else None
        self._pulumi_command = pulumi_command
        self._env = dict(env or {})
        self._stack: Any | None = None

    def __repr__(self) -> str:
        return f"PulumiDeployer(project_dir={str(self.project_dir)!r}, stack_name={self.stack_name!r})"

    # -- the Protocol

    def current(self) -> DeployedState:
        stack = self._select()
        outputs = self._call(stack.outputs, "read the stack outputs")
        missing = [key for key in ("stage", "weight") if key not in outputs]
        if missing:
            raise DeployerError(
                f"stack {self.stack_name!r} has no output(s) {missing}: it was never updated with this "
                f"program; apply the first stage with `pulumi up --stack {self.stack_name} "
                f"--config-file Pulumi.<stage>.yaml`"
            )
        stage = str(outputs["stage"].value)
        try:
            weight = int(outputs["weight"].value)
        except (TypeError, ValueError) as err:
            raise DeployerError(
                f"stack {self.stack_name!r} output 'weight' is {outputs['weight'].value!r}, not a whole number"
            ) from err
        history = self.history()
        pending = pending_change(history)
        entry = stage_since(history, stage, project_name(self.project_dir))
        if entry is None and pending is not None:
            # between two phases of a change into `stage`: the bot finishes it first
            entry = next(e for e in history if e.kind == "update" and e.result == "succeeded")
        if entry is None:
            raise DeployerError(
                f"stack {self.stack_name!r} reports stage {stage!r} but no successful update in its "
                f"history applied it; cannot tell how long the stage has run"
            )
        head = _succeeded(history)[0]
        tags = self.tags()
        identity = canary_identity(outputs["services"].value if "services" in outputs else None)
        changed = None if pending is not None else canary_since(history, entry, identity, tags.get(CANARY_TAG))
        held_from = changed or entry
        return DeployedState(
            stage=stage,
            weight=weight,
            since=_utc(held_from.end_time or held_from.start_time),  # type: ignore[arg-type]
            update_version=entry.version,
            message=entry.message,
            pending=pending,
            tags=tags,
            head_version=head.version,
            head_message=head.message,
            head_finished=head.end_time or head.start_time,
            canary_changed=changed,
            canary_note=f"{held_from.version} {identity}" if identity and pending is None else None,
        )

    def head_version(self) -> int | None:
        succeeded = _succeeded(self.history())
        return succeeded[0].version if succeeded else None

    def update_in_progress(self) -> bool | None:
        """Whether an update holds the stack now (`pulumi stack ls --json`: updateInProgress), read
        without taking the lock; None when the backend does not say."""
        stack = self._select()
        summaries = self._call(stack.workspace.list_stacks, "list the stacks")
        ours = [s for s in summaries if s.name.split("/")[-1] == self.stack_name.split("/")[-1]]
        return ours[0].update_in_progress if ours else None

    def tags(self) -> dict[str, str]:
        stack = self._select()
        return dict(self._call(stack.list_tags, "read the stack tags"))

    def set_tag(self, key: str, value: str) -> None:
        stack = self._select()
        self._call(lambda: stack.set_tag(key, value), f"set the stack tag {key!r}")

    def remove_tag(self, key: str) -> None:
        stack = self._select()
        self._call(lambda: stack.remove_tag(key), f"remove the stack tag {key!r}")

    def apply(
        self, stage_name: str, message: str, *, source: str | None = None, expect_head: int | None = None,
        action: str | None = None,
    ) -> ApplyResult:
        """`pulumi up --config-file Pulumi.<stage>.yaml --message 'rollout: ...'` in phases, each
        exactly once: the early phases `--target` what moves first, the last one is untargeted.
        `source` replays an interrupted change from that stage (every phase is idempotent).
        Compare-and-apply: with `expect_head`, the stack's newest update is read again right
        before the first `up`, and a different one (someone applied in the meantime) is refused
        with StaleStateError; Pulumi's own lock covers the update itself."""
        self._validated_stage(stage_name)  # a broken stage file fails here, with file + key + rule
        release = load_release_lenient(self.project_dir)  # another stage's broken file is not in the way
        target = release.stage(stage_name)
        stack = self._select()
        if expect_head is not None:
            head = self.head_version()
            if head != expect_head:
                raise StaleStateError(
                    f"the stack changed after this decision was made (its newest update is {head}, "
                    f"the decision was made at {expect_head}): nothing applied; decide again on the new state"
                )
        previous = self._outputs_or_none(stack) or {}
        previous_stage = source or (str(previous["stage"].value) if "stage" in previous else None)
        previous_weight = int(previous["weight"].value) if "weight" in previous else None
        if source is not None:
            previous_weight = release.stage(source).weight
        # the bot names the action; a message from elsewhere may be composed (`rollout: ...`)
        composed = parse_update_message(message) if action is None else None
        if composed and composed.target != stage_name:
            raise ValueError(f"message {message!r} names stage {composed.target!r}, not {stage_name!r}")
        reason = composed.reason if composed else message
        action = action or (composed.action if composed else action_for(previous_weight, target.weight))
        phases = self._phases(release, previous_stage, target, previous)
        applied: list[str] = []
        events: list[tuple[datetime, str]] = []

        def event(text: str) -> None:
            at = datetime.now(timezone.utc)
            events.append((at, text))
            if self.progress is not None:
                self.progress(at, text)

        result = None
        for index, (phase, urns) in enumerate(phases):
            step = f"{action} {previous_stage or '?'} -> {stage_name} phase {index + 1}/{len(phases)} {phase.name}"
            if phase.wait:
                event(f"{step} in {phase.wait.total_seconds():g} s (the scale-down delay)")
                self._sleep(phase.wait.total_seconds())
            event(f"{step} started" + (f": {'; '.join(phase.changes)}" if phase.changes else ""))
            marker = f"[{index + 1}/{len(phases)} {phase.name}]" if len(phases) > 1 else ""
            text = update_message(action, previous_stage, stage_name, reason, marker)
            result = self._call(
                # show_secrets=False: the summary the SDK reads back after `up` needs no secret values
                lambda text=text, urns=urns: stack.up(
                    config_file=self._config_file(stage_name), message=text, color="never",
                    show_secrets=False, target=urns or None,
                ),
                f"apply stage {stage_name!r}" + (f" (phase {index + 1}/{len(phases)} {phase.name})" if marker else ""),
            )
            applied.append(text)
            event(f"{step} done" + (f" (stack update {result.summary.version})" if getattr(result.summary, "version", None) else ""))
        assert result is not None
        summary = result.summary
        outputs = result.outputs
        return ApplyResult(
            stage=str(outputs["stage"].value) if "stage" in outputs else stage_name,
            weight=int(outputs["weight"].value) if "weight" in outputs else target.weight,
            action=action,
            previous_stage=previous_stage,
            message=applied[-1],
            version=getattr(summary, "version", None),
            started=_utc(getattr(summary, "start_time", None)),
            finished=_utc(getattr(summary, "end_time", None)),
            resource_changes=dict(getattr(summary, "resource_changes", None) or {}),
            phases=tuple(applied),
            events=tuple(events),
        )

    def _phases(self, release: Release, previous_stage: str | None, target: Stage, outputs: Mapping[str, Any]):
        """(phase, URNs to target) in order. Without a known previous stage, or outputs that do
        not name the resources (an older program), one untargeted update: the program's own
        dependencies still order it."""
        if previous_stage is None or previous_stage not in release.project.stage_order or previous_stage in release.unavailable:
            return [(Phase("apply", (), timedelta(0), ()), [])]
        transition = plan_transition(release.project, release.stage(previous_stage), target)
        services = outputs["services"].value if "services" in outputs else {}
        try:
            return [(phase, phase_urns(phase, services)) for phase in transition.phases]
        except MissingResources as err:
            log.warning("%s: applying %s in one update", err, target.name)
            return [(Phase("apply", (), timedelta(0), ()), [])]

    def preview(self, stage_name: str) -> str:
        """`pulumi preview --diff --config-file Pulumi.<stage>.yaml`: the plan as text."""
        self._validated_stage(stage_name)
        stack = self._select()
        result = self._call(
            lambda: stack.preview(config_file=self._config_file(stage_name), diff=True, color="never"),
            f"preview stage {stage_name!r}",
        )
        return result.stdout

    # -- reading history

    def history(self) -> list[HistoryEntry]:
        stack = self._select()
        # show_secrets=False: the bot never needs secret config values, so never asks for them
        summaries = self._call(lambda: stack.history(show_secrets=False), "read the stack history")
        return [
            HistoryEntry(
                version=s.version,
                kind=s.kind,
                result=s.result,
                message=s.message or "",
                config={key: value.value for key, value in (s.config or {}).items()},
                start_time=_utc(s.start_time),  # type: ignore[arg-type]
                end_time=_utc(s.end_time),
            )
            for s in summaries
        ]

    # -- plumbing

    def _config_file(self, stage_name: str) -> str:
        # relative to the work dir, as a user would type it; the CLI runs with cwd = project dir
        return stage_file(Path("."), stage_name).name

    def _validated_stage(self, stage_name: str):
        # a broken stage file fails here with file + key + rule, before the CLI is touched
        return load_stack_config(self.project_dir, stage_name).stage

    def _command(self) -> Any:
        if self._pulumi_command is not None:
            return self._pulumi_command
        from pulumi.automation import PulumiCommand
        from pulumi.automation.errors import InvalidVersionError

        where = f"{self._pulumi_root}/bin/pulumi" if self._pulumi_root else "`pulumi` on PATH"
        try:
            self._pulumi_command = PulumiCommand(root=self._pulumi_root)
        except (FileNotFoundError, PermissionError) as err:
            raise DeployerError(
                f"Pulumi CLI not found ({where}): install it from {PULUMI_INSTALL_URL} "
                f"or point the bot at it with --pulumi-root"
            ) from err
        except InvalidVersionError as err:
            raise DeployerError(f"Pulumi CLI at {where} is not usable: {err}") from err
        return self._pulumi_command

    def _select(self) -> Any:
        if self._stack is not None:
            return self._stack
        from pulumi.automation import LocalWorkspaceOptions, select_stack

        options = LocalWorkspaceOptions(pulumi_command=self._command(), env_vars=self._env)
        self._stack = self._call(
            lambda: select_stack(self.stack_name, work_dir=str(self.project_dir), opts=options),
            f"select stack {self.stack_name!r}",
        )
        return self._stack

    def _outputs_or_none(self, stack: Any) -> Mapping[str, Any] | None:
        outputs = self._call(stack.outputs, "read the stack outputs")
        return outputs or None

    def _call(self, fn: Any, doing: str) -> Any:
        """Run one Automation API call; turn its errors into DeployerError. Never retries."""
        from pulumi.automation.errors import (
            CommandError,
            ConcurrentUpdateError,
            StackNotFoundError,
        )

        try:
            return fn()
        except ConcurrentUpdateError as err:
            raise StackLockedError(
                f"cannot {doing}: stack {self.stack_name!r} is locked by another update in progress. "
                f"Nothing was applied and the bot does not retry; the next tick re-reads the stack. "
                f"If no update is really running, check with `pulumi stack history` and clear the "
                f"lock with `pulumi cancel --stack {self.stack_name}`."
            ) from err
        except StackNotFoundError as err:
            raise DeployerError(
                f"cannot {doing}: stack {self.stack_name!r} does not exist in the current backend; "
                f"create it with `pulumi stack init {self.stack_name}` (or log in to the right backend)"
            ) from err
        except CommandError as err:
            raise DeployerError(f"cannot {doing}: the Pulumi CLI failed:\n{_tail(err)}") from err
        except FileNotFoundError as err:
            raise DeployerError(
                f"cannot {doing}: Pulumi CLI not found: install it from {PULUMI_INSTALL_URL}"
            ) from err


# Pulumi reads its access token only from PULUMI_ACCESS_TOKEN or its own credentials file; the
# in-cluster bot gets it as a mounted Secret file and hands it to the CLI's process only, so it
# never sits in the pod spec (PULUMI_CONFIG_PASSPHRASE_FILE, AWS_SHARED_CREDENTIALS_FILE and
# GOOGLE_APPLICATION_CREDENTIALS are files already and pass through the environment as they are).
TOKEN_FILE_VARIABLES = ("PULUMI_ACCESS_TOKEN",)  # each read from $VAR_FILE when $VAR is unset


def cli_env_from_files(environ: Mapping[str, str]) -> dict[str, str]:
    """Variables for the Pulumi CLI read from the files the environment names (notify.read_token,
    as the bot's other tokens); a named file that cannot be read is an error naming the variable,
    never a silent anonymous login. A variable set already passes through as it is."""
    env: dict[str, str] = {}
    for var in TOKEN_FILE_VARIABLES:
        if environ.get(var):
            continue
        try:
            token = read_token(var, required=False, environ=environ)
        except NotifyError as err:
            raise DeployerError(str(err)) from None
        if token is not None:
            env[var] = token.reveal()
    return env


def _tail(err: Exception, lines: int = 15) -> str:
    """The end of the CLI's output: where Pulumi prints the error. Secrets are masked by Pulumi."""
    text = str(err).strip().splitlines()
    return "\n".join(text[-lines:])
