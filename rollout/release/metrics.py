"""The release bot's own metrics, so people can see what it judged and decided, and notice when
it stops: the dashboard's bot row and the dead man's switch (`GenesisReleaseBotSilent`).

`rollout watch --metrics-port` serves them; `rollout tick` pushes them to a Pushgateway when
PUSHGATEWAY_URL is set (each tick is a new process, so every metric is a gauge of the latest
tick, grouped by job and stack). Every series carries rollout="genesis-rollout" and the stack.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    push_to_gateway,
    start_http_server,
)

from rollout.model import Release
from rollout.monitoring.names import (
    APPROVAL_METRIC,
    APPROVAL_VALUES,
    CHECK_DURATION_METRIC,
    CHECK_VERDICT_METRIC,
    DECISION_METRIC,
    GATE_VERDICT_METRIC,
    JUDGE_ERRORS_METRIC,
    JUDGE_EVIDENCE_METRIC,
    JUDGE_RATIO_METRIC,
    JUDGE_THRESHOLD_METRIC,
    LAST_CHECK_METRIC,
    NEXT_PROMOTION_METRIC,
    PAUSED_METRIC,
    ROLLOUT_LABEL,
    ROLLOUT_VALUE,
    STACK_LOCKED_METRIC,
    STACK_LOCKED_SECONDS_METRIC,
    STAGE_INFO_METRIC,
    VERDICT_VALUES,
    WEIGHT_METRIC,
)
from rollout.release.controls import read_controls

JOB = "genesis-rollout-bot"
ACTIONS = ("promote", "rollback", "complete", "wait")
VERDICT_VALUE = VERDICT_VALUES


class BotMetrics:
    """One registry per bot process; `record()` after every tick. With the release, it also
    publishes the next stage's approval and when the next promotion is due."""

    def __init__(self, stack: str, release: Release | None = None) -> None:
        self.stack = stack
        self.release = release
        self.registry = CollectorRegistry()
        base = [ROLLOUT_LABEL, "stack"]

        def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, [*base, *extra], registry=self.registry)

        self.stage = gauge(STAGE_INFO_METRIC, "1 for the stage the stack is at", ("stage",))
        self.weight = gauge(WEIGHT_METRIC, "Canary weight of the current stage (planned, in percent)")
        self.gate = gauge(GATE_VERDICT_METRIC, "Newest check per gate: 0 pass, 1 hold, 2 fail", ("gate",))
        self.verdict = gauge(CHECK_VERDICT_METRIC, "Newest check: 0 pass, 1 hold, 2 fail")
        self.decision = gauge(DECISION_METRIC, "1 for the action the newest tick decided", ("action",))
        self.duration = gauge(CHECK_DURATION_METRIC, "Seconds the newest tick spent measuring")
        self.paused = gauge(PAUSED_METRIC, "1 while automatic promotion is paused (rollout pause); rollbacks continue")
        self.approval = gauge(APPROVAL_METRIC, "The next stage's approval: 0 not needed, 1 needed and not given, 2 given",
                              ("stage",))
        self.next_promotion = gauge(
            NEXT_PROMOTION_METRIC,
            "Earliest time (unix seconds) the bot promotes or completes if the checks keep passing; "
            "absent at weight 0 and when the newest tick decided a rollback",
        )
        self.last_check = gauge(
            LAST_CHECK_METRIC,
            "End of the last tick that read the stack and ran every check it needed (none at weight 0)",
        )
        self.evidence = gauge(JUDGE_EVIDENCE_METRIC, "The judge's e-value per judged gate in the newest check", ("gate",))
        self.threshold = gauge(JUDGE_THRESHOLD_METRIC, "The e-value (1/alpha) at which the judge declares a regression", ("gate",))
        self.ratio = gauge(JUDGE_RATIO_METRIC, "Canary/stable ratio the judge estimates, with its confidence sequence",
                           ("gate", "bound"))
        self.judge_errors = gauge(JUDGE_ERRORS_METRIC,
                                  "Judged gates the judge could not judge in the newest check (they hold)")
        self.locked = gauge(STACK_LOCKED_METRIC, "1 while the newest tick found the stack locked by an update")
        self.locked_seconds = gauge(
            STACK_LOCKED_SECONDS_METRIC, "How long this bot process has seen the stack locked (0: not locked)"
        )
        self._labels = {ROLLOUT_LABEL: ROLLOUT_VALUE, "stack": stack}

    def record(self, outcome: Any, seconds: float, finished: float) -> None:
        """A tick's outcome (rollout.release.bot.TickOutcome), how long its checks took, and when
        it finished (unix seconds): only a tick that got this far counts as a successful check."""
        labels = self._labels
        self.stage.clear()
        self.stage.labels(**labels, stage=outcome.state.stage).set(1)
        self.weight.labels(**labels).set(outcome.state.weight)
        for action in ACTIONS:
            self.decision.labels(**labels, action=action).set(int(outcome.decision.action == action))
        for metric in (self.verdict, self.gate, self.evidence, self.threshold, self.ratio, self.judge_errors):
            metric.clear()  # a tick without checks (weight 0) must not keep the last verdict
        if outcome.checks:
            newest = outcome.checks[-1]
            self.verdict.labels(**labels).set(VERDICT_VALUE[newest.verdict])
            self.judge_errors.labels(**labels).set(sum(g.judge_error is not None for g in newest.gates))
            for gate in newest.gates:
                self.gate.labels(**labels, gate=gate.name).set(VERDICT_VALUE[gate.status])
                if gate.evidence is not None:
                    self._judge(gate.name, gate.evidence)
        self.duration.labels(**labels).set(seconds)
        self.last_check.labels(**labels).set(finished)
        self._operators(outcome, finished)

    def _operators(self, outcome: Any, finished: float) -> None:
        """Pause, the next stage's approval (read as the bot reads them) and when the hold ends."""
        labels, state = self._labels, outcome.state
        target = self.release.next_stage(state.stage) if self.release and state.weight > 0 else None
        controls = read_controls(state.tags, target.name if target else None, state.head_version)
        self.paused.labels(**labels).set(int(bool(controls.paused)))
        self.approval.clear()
        if target is not None:
            needed = target.analysis.approval == "required"
            value = "given" if needed and controls.approved else "needed" if needed else "not needed"
            self.approval.labels(**labels, stage=target.name).set(APPROVAL_VALUES[value])
        self.next_promotion.clear()
        if state.weight > 0 and outcome.decision.action != "rollback":
            due = finished + outcome.decision.hold_remaining.total_seconds()
            self.next_promotion.labels(**labels).set(due)

    def record_lock(self, locked: bool, seconds: float) -> None:
        """What the newest tick saw of the stack lock (GenesisStackLocked reads it)."""
        self.locked.labels(**self._labels).set(int(locked))
        self.locked_seconds.labels(**self._labels).set(seconds)

    def _judge(self, name: str, evidence: Any) -> None:
        labels = self._labels
        self.evidence.labels(**labels, gate=name).set(evidence.e_value)
        self.threshold.labels(**labels, gate=name).set(evidence.threshold)
        for bound, value in (("estimate", evidence.ratio), ("low", evidence.ratio_low), ("high", evidence.ratio_high)):
            if value is not None:
                self.ratio.labels(**labels, gate=name, bound=bound).set(value)

    def push(self, url: str) -> None:
        """Replace this stack's group on the Pushgateway with the newest tick's metrics."""
        push_to_gateway(url, job=JOB, registry=self.registry, grouping_key={"stack": self.stack}, timeout=10)

    def serve(self, port: int, host: str = "0.0.0.0") -> Any:
        """Serve /metrics (rollout watch); returns the server, to shut down."""
        server, _ = start_http_server(port, host, registry=self.registry)
        return server
