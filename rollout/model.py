"""The one stage/gate model: the program, the alert rules, the dashboard and the bot all read it.

Config keys are camelCase in YAML (Pulumi convention) and snake_case in Python.
Every model forbids unknown keys so a typo in a stage file is an error, not a silent default,
and is strict about types: `weight: true` or `weight: "10"` is refused, not read as 1 or 10.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

STAGE_ORDER: tuple[str, ...] = ("stable", "canary", "gradual", "majority", "full")
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: object) -> timedelta:
    """Prometheus-style duration ('48h', '5m', '1h30m', '30s') -> timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    text = str(value).strip()
    match = _DURATION.match(text)
    if not text or not match or not any(match.groups()):
        raise ValueError(f"must be a duration like '48h', '5m' or '30s' (got {value!r})")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def format_duration(value: timedelta) -> str:
    """timedelta -> the shortest Prometheus duration ('10m', '48h', '90s')."""
    total = int(value.total_seconds())
    if total == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


class Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, strict=True
    )


# --------------------------------------------------------------------------- gates


class Direction(StrEnum):
    """Which side of the threshold is healthy."""

    MAX = "max"  # healthy while value <= target (error rate, latency, fallback)
    MIN = "min"  # healthy while value >= target (pass rate, success, task rate)


class Judge(Model):
    """The sequential canary-versus-stable judge on one gate (rollout/analysis/judge.py,
    docs/judge.md): a regression once the evidence that the canary is worse than
    (1 + tolerance) x stable reaches 1/alpha, however often it is looked at."""

    # the canary may be this much worse before it counts: 0.5 = 1.5x stable's error rate; for
    # latency, 0.2 = the canary's `quantile` may be up to 1.2x stable's (in seconds)
    tolerance: float = Field(ge=0, le=100)
    # latency only: which quantile the tolerance is about (0.95: P95). Ignored on rate gates
    # (Gates rejects it there, so a misplaced setting is an error, not a silent no-op)
    quantile: float | None = Field(None, ge=0.5, le=0.999)
    # None: what is left of analysis.judgeAlpha after the explicit gate alphas, shared evenly
    # by the other judged gates and the services (StackConfig.judge_alpha)
    alpha: float | None = Field(None, gt=0, lt=1)
    # a regression also needs this many canary events (errors, slow requests): a handful of
    # warm-up errors on a fresh pod is not a verdict. Only removes rejections: alpha still holds
    min_canary_events: int = Field(5, ge=0)


class Gate(Model):
    """A target (missing it holds the stage) and an optional critical threshold.

    Breaching the critical threshold fails the check (and, N times in a row, rolls back) when
    `rollback` is on; with `rollback: false` it pages through the alert rules and holds the
    stage, but the bot does not roll back on it (the Day-0 plan's "Auto-Rollback: NO").
    `judge` adds the canary-versus-stable comparison: a regression it declares fails the check
    at once (rollback gates) or holds it.
    """

    direction: ClassVar[Direction]
    is_ratio: ClassVar[bool] = False

    target: float
    critical: float | None = None
    rollback: bool = True
    judge: Judge | None = None

    @model_validator(mode="after")
    def _check(self) -> Gate:
        for field in ("target", "critical"):
            value = getattr(self, field)
            if value is None:
                continue
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{field} must be a finite number >= 0 (got {value})")
            if self.is_ratio and value > 1:
                raise ValueError(f"{field} is a ratio and must be between 0 and 1 (got {value})")
        if self.critical is not None:
            if self.direction is Direction.MAX and self.critical < self.target:
                raise ValueError(
                    f"critical ({self.critical}) must be >= target ({self.target}) for a maximum"
                )
            if self.direction is Direction.MIN and self.critical > self.target:
                raise ValueError(
                    f"critical ({self.critical}) must be <= target ({self.target}) for a minimum"
                )
        return self

    def meets_target(self, value: float) -> bool:
        return value <= self.target if self.direction is Direction.MAX else value >= self.target

    def breaches_critical(self, value: float) -> bool:
        if self.critical is None:
            return False
        return value > self.critical if self.direction is Direction.MAX else value < self.critical


class MaxRatioGate(Gate):
    direction = Direction.MAX
    is_ratio = True


class MinRatioGate(Gate):
    direction = Direction.MIN
    is_ratio = True


class MaxGate(Gate):
    direction = Direction.MAX


class MinGate(Gate):
    direction = Direction.MIN


class Gates(Model):
    """Per-stage gates. Defaults are the Day-0 plan's targets and critical thresholds."""

    error_rate: MaxRatioGate = MaxRatioGate(target=0.001, critical=0.01)
    p95_latency_seconds: MaxGate = MaxGate(target=0.2, critical=0.5)
    test_pass_rate: MinRatioGate = MinRatioGate(target=0.98, critical=0.95)
    # the plan: Pipelex success and SPICE task rate alert but do not auto-rollback
    pipelex_success_rate: MinRatioGate = MinRatioGate(target=0.95, critical=0.90, rollback=False)
    spice_tasks_per_minute: MinGate = MinGate(target=1.0, rollback=False)
    fallback_rate: MaxRatioGate = MaxRatioGate(target=0.05, critical=0.20, rollback=False)
    # optional: the 5xx share the router measures (Istio's istio_requests_total), which still
    # counts when a crashing canary reports nothing about its own errors
    router_error_rate: MaxRatioGate | None = None

    # the plan's automatic rollback triggers: a stage file may tighten them, never switch them off
    ROLLBACK_TRIGGERS: ClassVar[tuple[str, ...]] = ("error_rate", "p95_latency_seconds", "test_pass_rate")
    # the gates with counts behind them, which the judge can compare (rollout.analysis.signals)
    JUDGEABLE: ClassVar[tuple[str, ...]] = ("error_rate", "p95_latency_seconds", "pipelex_success_rate", "fallback_rate")

    @model_validator(mode="after")
    def _judge_needs_counts(self) -> Gates:
        for name, gate in self.items():
            if gate.judge is not None and name not in self.JUDGEABLE:
                raise ValueError(
                    f"{to_camel(name)}.judge: the judge compares counts (errors, slow requests, failed "
                    f"workflows, fallbacks); {to_camel(name)} has none. Judgeable: "
                    + ", ".join(to_camel(n) for n in self.JUDGEABLE)
                )
        return self

    def judged(self) -> list[tuple[str, Gate]]:
        return [(name, gate) for name, gate in self.items() if gate.judge is not None]

    @model_validator(mode="after")
    def _quantile_on_latency_only(self) -> Gates:
        for name, gate in self.judged():
            if gate.judge is not None and gate.judge.quantile is not None and name != "p95_latency_seconds":
                raise ValueError(f"{to_camel(name)}.judge.quantile: only the latency gate (p95LatencySeconds) judges a "
                                 f"quantile; a rate gate's judge takes tolerance, alpha and minCanaryEvents")
        return self

    @model_validator(mode="after")
    def _triggers_roll_back(self) -> Gates:
        for name in self.ROLLBACK_TRIGGERS:
            gate = getattr(self, name)
            if not gate.rollback or gate.critical is None:
                raise ValueError(
                    f"{to_camel(name)}: is one of the plan's rollback triggers (error rate, P95 latency, "
                    "test pass rate): it needs a critical threshold and rollback: true"
                )
        return self

    def items(self) -> list[tuple[str, Gate]]:
        """(gate name, gate) in declaration order, unset optional gates left out; names are the
        Python field names."""
        return [
            (name, gate)
            for name in type(self).model_fields
            if (gate := getattr(self, name)) is not None
        ]


class Analysis(Model):
    """How checks are judged over time."""

    check_interval: Duration = timedelta(minutes=5)
    hold: Duration = timedelta(hours=48)
    consecutive_failures: int = Field(3, ge=1, le=100)
    # also roll back once this many checks failed since the stage started, in a row or not
    # (Flagger's threshold; Argo Rollouts' failureLimit + 1). None: only the consecutive rule.
    cumulative_failures: int | None = Field(None, ge=1, le=100_000)
    # promote only if the last N checks passed as well as the hold being over
    passing_checks_to_promote: int = Field(3, ge=1, le=1000)
    # below this many canary requests in the window the verdict is 'hold' (too little data)
    min_canary_requests: int = Field(50, ge=0)
    # rate()/quantile window of the recording rules; defaults to the check interval
    window: Duration | None = None
    # a canary Deployment not fully available for this long fails the check and rolls back at
    # once (kube-state-metrics; Flagger's progressDeadlineSeconds, Argo's progressDeadlineAbort)
    progress_deadline: Duration = timedelta(minutes=10)
    # "required": the bot promotes *into* this stage only after `rollout approve <stage>`
    approval: Literal["none", "required"] = "none"
    # the judge's false-alarm budget for one attempt of this stage by one release, over all
    # its services: the explicit gate alphas (judge.alpha) come off the top, the rest is split
    # evenly over the other judged gates and the services (StackConfig.judge_alpha); the chance
    # that a healthy canary is ever declared a regression during the stage is at most this
    judge_alpha: float = Field(0.01, gt=0, lt=1)
    # the judge's evidence starts this long after the stage start: cold canary pods (JIT, empty
    # caches, connection pools) are slower and fail more for their first minutes. Fixed before
    # the stage starts, so the guarantee holds. Chosen with benchmarks/bench_judge.py
    warmup: Duration = timedelta(minutes=10)
    # when the stable track breaches a gate's critical threshold too and the judge finds the
    # canary no worse: "rollback" (the plan: the thresholds are absolute) or "hold" (and page)
    stable_breach: Literal["rollback", "hold"] = "rollback"

    @field_validator("warmup")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value.total_seconds() < 0:
            raise ValueError("must be 0s or longer")
        return value

    @field_validator("check_interval", "hold", "progress_deadline")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value.total_seconds() <= 0:
            raise ValueError("must be longer than 0s")
        return value

    @property
    def rate_window(self) -> timedelta:
        return self.window or self.check_interval

    @property
    def alert_for(self) -> timedelta:
        """An alert evaluated every check_interval fires on the Nth consecutive bad check."""
        return self.check_interval * (self.consecutive_failures - 1)


# --------------------------------------------------------------------------- feature flags

# The Day-0 plan's 15 flags. Sub-features name the flag they depend on.
FLAG_PARENTS: dict[str, str | None] = {
    "spice-task-generation": None,
    "spice-self-play": "spice-task-generation",
    "spice-challenger-agent": "spice-task-generation",
    "spice-reasoner-agent": "spice-task-generation",
    "spice-se-darwin-integration": "spice-task-generation",
    "spice-task-cache": "spice-task-generation",
    "pipelex-workflows": None,
    "pipelex-runtime": "pipelex-workflows",
    "pipelex-workflow-templates": "pipelex-workflows",
    "pipelex-parallel-steps": "pipelex-workflows",
    "pipelex-htdag-fallback": "pipelex-workflows",
    "fallback-mode": None,
    "spice-pipelex-metrics": None,
    "spice-pipelex-tracing": None,
    "track-request-tagging": None,
}
# The flags this release introduces: the rollback target turns them off and the fallback on.
DEFAULT_RELEASE_FLAGS = ["spice-task-generation", "pipelex-workflows"]
FALLBACK_FLAG = "fallback-mode"


class FeatureFlags(BaseModel):
    """Every flag declared explicitly per stage: no flag silently defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    values: dict[str, bool]

    @model_validator(mode="before")
    @classmethod
    def _wrap(cls, data: object) -> object:
        if isinstance(data, dict) and "values" not in data:
            return {"values": data}
        return data

    @field_validator("values")
    @classmethod
    def _complete(cls, values: dict[str, bool]) -> dict[str, bool]:
        unknown = sorted(set(values) - set(FLAG_PARENTS))
        if unknown:
            raise ValueError(f"unknown flag(s) {unknown}; known flags: {sorted(FLAG_PARENTS)}")
        missing = sorted(set(FLAG_PARENTS) - set(values))
        if missing:
            raise ValueError(f"every stage declares all flags; missing {missing}")
        for flag, parent in FLAG_PARENTS.items():
            if parent and values[flag] and not values[parent]:
                raise ValueError(f"flag '{flag}' is on but the flag it depends on, '{parent}', is off")
        return values

    def enabled(self, flag: str) -> bool:
        return self.values[flag]


# --------------------------------------------------------------------------- stage


class StageSettings(Model):
    name: str = Field(pattern=DNS_LABEL)
    weight: int = Field(ge=0, le=100, description="percent of traffic on the canary track")
    description: str = ""


class Stage(Model):
    """What one stage file (Pulumi.<stage>.yaml) holds."""

    stage: StageSettings
    analysis: Analysis = Analysis()
    gates: Gates = Gates()
    flags: FeatureFlags

    @property
    def name(self) -> str:
        return self.stage.name

    @property
    def weight(self) -> int:
        return self.stage.weight

    def _judge_alpha_parts(self) -> tuple[float, int]:
        """Per service: the sum of the judged gates' explicit judge.alpha, and how many judged
        gates have none (and so share what is left of analysis.judgeAlpha)."""
        judges = [gate.judge for _, gate in self.gates.judged() if gate.judge is not None]
        return sum(j.alpha for j in judges if j.alpha is not None), sum(1 for j in judges if j.alpha is None)

    @model_validator(mode="after")
    def _judge_alphas_fit(self) -> Stage:
        explicit, shared = self._judge_alpha_parts()
        if shared and explicit >= self.analysis.judge_alpha:
            raise ValueError(f"gates' judge.alpha add up to {explicit:g}, which leaves nothing of "
                             f"analysis.judgeAlpha ({self.analysis.judge_alpha:g}) for the judged gates without one")
        return self

    def judge_alpha(self, gate_name: str, services: int = 1) -> float:
        """The false-alarm budget of one judged gate on one of `services` services judged in
        this stage: an explicit judge.alpha is the gate's own (per service); the others share
        what is left of analysis.judgeAlpha once the explicit alphas of all services are taken,
        evenly over gates and services. The sum over every judged gate and service is at most
        judgeAlpha (when the explicit alphas leave anything), so k services do not each spend
        the whole budget."""
        if services < 1:
            raise ValueError(f"services must be >= 1 (got {services})")
        gate = getattr(self.gates, gate_name)
        if gate.judge is None:
            raise ValueError(f"gate {gate_name!r} has no judge")
        if gate.judge.alpha is not None:
            return gate.judge.alpha
        explicit, shared = self._judge_alpha_parts()
        explicit, shared = explicit * services, shared * services
        left = self.analysis.judge_alpha - explicit
        if left <= 0:
            raise ValueError(f"judge alphas: the gates' explicit judge.alpha ({explicit:g} over {services} "
                             f"service(s)) use up analysis.judgeAlpha ({self.analysis.judge_alpha:g}); "
                             f"nothing is left for {gate_name}")
        return left / shared


def rollback_target_problem(stage: Stage, release_flags: list[str]) -> str | None:
    """A weight-0 stage is the rollback target: the release's flags off, the fallback on.

    Once a release is complete its flags become the new baseline: `releaseFlags: []` then lets
    the stable stage keep them on (see docs/stack.md, "Completing a release").
    """
    if stage.weight != 0 or not release_flags:
        return None
    on = [flag for flag in release_flags if stage.flags.enabled(flag)]
    if on or not stage.flags.enabled(FALLBACK_FLAG):
        return (
            f"stage '{stage.name}' has weight 0, so it is the rollback target: the release flags "
            f"({', '.join(release_flags)}) must be off and {FALLBACK_FLAG} on"
            + (f"; on now: {', '.join(on)}" if on else f"; {FALLBACK_FLAG} is off")
        )
    return None


# --------------------------------------------------------------------------- traffic split

TRACKS: tuple[str, ...] = ("stable", "canary")
MAX_SHARE_ERROR = 5  # percentage points the replica-ratio router may miss a stage's weight by
# A track taking traffic through a weighted route runs at least this many pods: one node drain or
# autoscaler eviction (a PDB percentage rounds up, so 10% of 1 pod allows evicting it) never
# leaves it with none while the route still sends it its share and the header-pinned testers.
MIN_CANARY_PODS = 2


@dataclass(frozen=True)
class Split:
    """Pods per track and the share of traffic each track gets, in percent."""

    stable_replicas: int
    canary_replicas: int
    stable_weight: int
    canary_weight: int

    def replicas(self, track: str) -> int:
        return self.stable_replicas if track == "stable" else self.canary_replicas

    def weight(self, track: str) -> int:
        return self.stable_weight if track == "stable" else self.canary_weight


def weighted_split(replicas: int, weight: int) -> Split:
    """Routers that split traffic by weight: stable keeps all its pods in every stage (so it can
    take 100% back at once), canary gets pods in proportion to its share (none at weight 0), and
    never fewer than MIN_CANARY_PODS while it takes traffic."""
    canary = 0 if weight == 0 else max(MIN_CANARY_PODS, math.ceil(replicas * weight / 100))
    return Split(replicas, canary, 100 - weight, weight)


def ratio_split(replicas: int, weight: int) -> Split:
    """No router: traffic follows the pod ratio. Both tracks keep a pod unless the weight is 0
    or 100; the weights are the share the ratio really gives."""
    if weight == 0:
        canary = 0
    elif weight == 100:
        canary = replicas
    else:
        canary = min(max(1, round(replicas * weight / 100)), replicas - 1) if replicas > 1 else 1
    effective = round(100 * canary / replicas)
    return Split(replicas - canary, canary, 100 - effective, effective)


def split_for(router: str, replicas: int, weight: int) -> Split:
    return ratio_split(replicas, weight) if router == "replica-ratio" else weighted_split(replicas, weight)


def replica_ratio_problem(project: ProjectSettings, stage: Stage) -> str | None:
    """With replica-ratio the share moves in steps of 100/replicas: refuse a stage it cannot meet
    within MAX_SHARE_ERROR points, naming the replicas that would."""
    if project.routing.router != "replica-ratio":
        return None
    for index, service in enumerate(project.services):
        got = ratio_split(service.replicas, stage.weight).canary_weight
        if abs(got - stage.weight) <= MAX_SHARE_ERROR:
            continue
        needed = next(
            (r for r in range(service.replicas + 1, 1001)
             if abs(ratio_split(r, stage.weight).canary_weight - stage.weight) <= MAX_SHARE_ERROR),
            None,
        )
        return (
            f"stage '{stage.name}' ({stage.weight}%) cannot be met by router replica-ratio: "
            f"services[{index}] '{service.name}' has {service.replicas} replicas, so the canary would "
            f"get {got}% of the traffic, more than {MAX_SHARE_ERROR} points off"
            + (f"; it needs at least {needed} replicas" if needed else "")
        )
    return None


def step_back_problem(rollback: str, deployed_weight: int | None, target: Stage) -> str | None:
    """A step back to a lower weight above 0 in one `pulumi up` would scale the canary down while
    the routes still send it the old share (routes depend on the Deployments whenever the target
    weight is above 0). Refused (by `rollout plan` and by the program), naming the safe way:
    `rollout rollback` to the rollback target `rollback`, then promote again."""
    if deployed_weight is None or not (0 < target.weight < deployed_weight):
        return None
    return (
        f"stage '{target.name}' ({target.weight}%) is below the deployed canary weight ({deployed_weight}%): "
        f"a step back in one `pulumi up` would scale the canary down before its traffic leaves it. "
        f"Roll back with `rollout rollback` (to '{rollback}', traffic first, then the scale-down), "
        f"then promote again; the phases are printed by `rollout plan <deployed stage> {rollback}`"
    )


# --------------------------------------------------------------------------- project-level


class SecretRef(Model):
    """A key of an existing Kubernetes Secret: secrets are referenced, never inlined."""

    name: str = Field(pattern=DNS_LABEL)
    key: str = Field(min_length=1)


def pinned_image(image: str) -> str:
    name = image.rsplit("/", 1)[-1]
    if "@sha256:" not in image and ":" not in name:
        raise ValueError(f"image must carry a tag or digest (got {image!r})")
    if name.endswith(":latest"):
        raise ValueError(f"image tag 'latest' is not reproducible (got {image!r})")
    return image


class TrackImage(Model):
    image: str = Field(min_length=1)
    version: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

    @field_validator("image")
    @classmethod
    def _pinned(cls, image: str) -> str:
        return pinned_image(image)


class ResourceQuantities(Model):
    cpu: str = Field(pattern=r"^\d+(\.\d+)?m?$")
    memory: str = Field(pattern=r"^\d+(Ki|Mi|Gi|Ti|K|M|G|T)?$")


class Resources(Model):
    requests: ResourceQuantities = ResourceQuantities(cpu="250m", memory="256Mi")
    limits: ResourceQuantities = ResourceQuantities(cpu="1", memory="512Mi")


class Probes(Model):
    readiness_path: str = "/healthz/ready"
    liveness_path: str = "/healthz/live"


class ServiceConfig(Model):
    name: str = Field(pattern=DNS_LABEL, max_length=40)
    namespace: str = Field("genesis", pattern=DNS_LABEL)
    port: int = Field(8080, ge=1, le=65535)
    metrics_path: str = "/metrics"
    replicas: int = Field(4, ge=1, le=1000, description="pods serving 100% of the traffic")
    stable: TrackImage
    canary: TrackImage
    resources: Resources = Resources()
    probes: Probes = Probes()
    flags_mount_path: str = "/etc/genesis/flags"
    # per track PodDisruptionBudget; percentages are rounded up by the disruption controller
    max_unavailable: str = Field("10%", pattern=r"^([1-9][0-9]?|100)%$")
    # the window of the app's genesis_error_rate gauge, stated by its owners. The judge estimates
    # errors from the gauge only when the app exports no genesis_request_errors_total, and acts on
    # that estimate (rolls back) only when this equals the stage's check interval; otherwise an
    # error is counted once per check its window overlaps, and a regression only holds
    error_gauge_window: Duration | None = None

    @field_validator("error_gauge_window")
    @classmethod
    def _gauge_window_positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value.total_seconds() <= 0:
            raise ValueError("must be longer than 0s (the window of the app's genesis_error_rate gauge)")
        return value


class ParentRef(Model):
    name: str = Field(pattern=DNS_LABEL)
    namespace: str | None = Field(None, pattern=DNS_LABEL)
    section_name: str | None = None


class CanaryHeader(Model):
    """Requests carrying this header go to the canary at every stage with weight above 0, so
    testers reach it on purpose (HTTPRoute header match, Istio match)."""

    name: str = Field("x-genesis-track", pattern=r"^[a-z0-9][a-z0-9-]*$")  # lowercase: Istio needs it
    value: str = Field("canary", min_length=1)


class RoutingConfig(Model):
    router: Literal["gateway-api", "istio", "replica-ratio"] = "gateway-api"
    hostnames: list[str] = ["genesis.example.com"]
    gateway: ParentRef = ParentRef(name="public", namespace="gateway-system")
    # Istio: the mesh gateways the VirtualService binds to ('mesh' for east-west)
    istio_gateways: list[str] = ["mesh"]
    canary_header: CanaryHeader | None = CanaryHeader()
    # replica-ratio only: the Service keeps a client on one pod (and so one track) by source IP
    session_affinity: bool = False
    # a stopping pod keeps serving this long (preStop sleep) while routers and endpoints let go
    drain_seconds: int = Field(15, ge=0, le=300)
    # after traffic left a track, wait this long before scaling it down (Argo's scaleDownDelaySeconds)
    scale_down_delay: Duration = timedelta(seconds=30)
    # after a flags ConfigMap changed, wait this long before traffic grows on pods that read it:
    # the kubelet projects a ConfigMap change into running pods after its sync period plus its
    # cache (up to about a minute, kubelet --sync-frequency 1m) and the flagd Python/Java
    # in-process providers poll the file every 5 s; 75 s covers both with a margin
    flags_propagation: Duration = timedelta(seconds=75)

    @model_validator(mode="after")
    def _affinity_where_supported(self) -> RoutingConfig:
        if self.session_affinity and self.router != "replica-ratio":
            raise ValueError(
                f"sessionAffinity is only supported with router replica-ratio (Service sessionAffinity: "
                f"ClientIP); {self.router} picks the track per request before any affinity applies "
                "(see docs/stack.md, Routers)"
            )
        return self


class GrafanaConfig(Model):
    admin_secret: str = Field("grafana-admin", pattern=DNS_LABEL)
    url: str | None = None  # external Grafana: dashboards go through the Grafana provider
    folder: str = "Genesis Rollout"
    # where people open the dashboard: links in notifications (time range and stage filled in)
    public_url: str | None = Field(None, pattern=r"^https?://")


class EmailReceiver(Model):
    to: str = "team@genesis.com"
    sender: str = "alertmanager@genesis.com"
    smarthost: str = Field("smtp.genesis.com:587", pattern=r"^[^:\s]+:\d+$")
    username: str = "alertmanager@genesis.com"
    password: SecretRef = SecretRef(name="alertmanager-smtp", key="password")
    require_tls: bool = True


class SlackChannel(Model):
    """One Slack channel: Slack app webhooks post to the channel they were made for, so each
    channel has its own webhook URL (a key of a Kubernetes Secret)."""

    channel: str = Field(pattern=r"^#[a-z0-9_-]+$")
    webhook: SecretRef


class SlackReceivers(Model):
    # the plan's two channels: updates and status here, critical issues and rollbacks there
    deployments: SlackChannel = SlackChannel(
        channel="#deployments", webhook=SecretRef(name="alertmanager-slack", key="deployments-webhook-url")
    )
    incidents: SlackChannel = SlackChannel(
        channel="#incidents", webhook=SecretRef(name="alertmanager-slack", key="incidents-webhook-url")
    )


class PagerDutyReceiver(Model):
    routing_key: SecretRef = SecretRef(name="alertmanager-pagerduty", key="routing-key")
    url: str | None = Field(None, pattern=r"^https?://")  # Events API v2 endpoint; Alertmanager's default when unset


class AlertingConfig(Model):
    """Who hears what (the Day-0 plan's communication plan): critical alerts and rollbacks page
    PagerDuty and reach Slack #incidents; warnings and stage changes go to Slack #deployments;
    stage changes and the daily status go to the team's e-mail."""

    email: EmailReceiver = EmailReceiver()
    slack: SlackReceivers = SlackReceivers()
    pagerduty: PagerDutyReceiver = PagerDutyReceiver()
    group_wait: Duration = timedelta(seconds=30)
    group_interval: Duration = timedelta(minutes=5)
    repeat_interval: Duration = timedelta(hours=4)
    # install mode: where every alert that is not ours goes ("null": the chart's default, nowhere)
    default_receiver: str = "null"


class MonitoringConfig(Model):
    mode: Literal["install", "existing"] = "install"
    namespace: str = Field("monitoring", pattern=DNS_LABEL)
    release_name: str = Field("kube-prometheus-stack", pattern=DNS_LABEL)
    chart_version: str = "79.5.0"
    retention: Duration = timedelta(days=15)
    storage_size: str = "50Gi"
    storage_class: str | None = None
    scrape_interval: Duration = timedelta(seconds=30)
    runbook_base_url: str = "https://github.com/genesis/genesis-rollout/blob/main/alerts/runbooks"
    # where the bot's stage and incident reports are kept (the tick workflow's artifacts); the
    # dashboard links to it
    reports_url: str = "https://github.com/genesis/genesis-rollout/actions/workflows/tick.yml"
    grafana: GrafanaConfig = GrafanaConfig()
    alerting: AlertingConfig = AlertingConfig()


class ClusterConfig(Model):
    """The Kubernetes cluster every resource goes to, through one explicit provider: never the
    kubeconfig context that happens to be current on the machine running `pulumi up`."""

    context: str | None = Field(None, min_length=1)
    kubeconfig: str | None = Field(None, min_length=1)  # a path; default: $KUBECONFIG or ~/.kube/config
    namespaces: list[str] = Field(min_length=1)  # the only namespaces the program may touch

    @field_validator("namespaces")
    @classmethod
    def _names(cls, namespaces: list[str]) -> list[str]:
        bad = [n for n in namespaces if not re.match(DNS_LABEL, n)]
        if bad:
            raise ValueError(f"not namespace names: {bad}")
        return namespaces

    @model_validator(mode="after")
    def _explicit(self) -> ClusterConfig:
        if self.context is None and self.kubeconfig is None:
            raise ValueError(
                "name the cluster explicitly: set context (a kubeconfig context) and/or kubeconfig "
                "(a path), so `pulumi up` never deploys to whatever context is current"
            )
        return self


class BotPulumi(Model):
    """How the in-cluster bot reaches the Pulumi state backend. Credentials are keys of existing
    Kubernetes Secrets, mounted as files and handed to the Pulumi CLI by the bot itself
    (rollout.release.backend): never an environment variable or an argument of the pod."""

    # None: Pulumi Cloud (app.pulumi.com); else a self-managed backend (s3://..., gs://..., azblob://...)
    backend_url: str | None = Field(None, pattern=r"^(https://|s3://|gs://|azblob://|file://)[^@\s]+$")
    access_token: SecretRef | None = SecretRef(name="pulumi-access-token", key="token")
    passphrase: SecretRef | None = None  # the passphrase secrets provider (PULUMI_CONFIG_PASSPHRASE_FILE)
    # a self-managed backend's cloud credentials file and the variable its SDK reads the path from
    backend_credentials: SecretRef | None = None
    backend_credentials_env: Literal["AWS_SHARED_CREDENTIALS_FILE", "GOOGLE_APPLICATION_CREDENTIALS"] | None = None

    @model_validator(mode="after")
    def _credentials_named(self) -> BotPulumi:
        if (self.backend_credentials is None) != (self.backend_credentials_env is None):
            raise ValueError("backendCredentials and backendCredentialsEnv go together (the file and the "
                             "variable its SDK reads the path from)")
        if self.backend_url is None and self.access_token is None:
            raise ValueError("Pulumi Cloud (no backendUrl) needs accessToken: a Secret key holding the token")
        return self


class BotConfig(Model):
    """The release bot itself (`genesis-rollout:bot`): `cluster` declares it as a Deployment running
    `rollout watch` with leader election, its ServiceAccount, Roles and PodMonitor (the default);
    `external` declares nothing, for the GitHub workflow fallback (.github/workflows/tick.yml)."""

    mode: Literal["cluster", "external"] = "cluster"
    # the bot image built from this repository (Dockerfile); the running bot declares its own
    # image (ROLLOUT_BOT_IMAGE) so its own `pulumi up` never replaces it (docs/bot.md, upgrade)
    image: str = Field("ghcr.io/genesis/genesis-rollout-bot:0.1.0", min_length=1)
    namespace: str = Field("monitoring", pattern=DNS_LABEL)
    stack: str = Field("prod", min_length=1)
    metrics_port: int = Field(9464, ge=1024, le=65535)
    # the services the bot reads; default in install mode: the chart's own Services
    prometheus_url: str | None = Field(None, pattern=r"^https?://[^@\s]+$")
    alertmanager_url: str | None = Field(None, pattern=r"^https?://[^@\s]+$")
    grafana_url: str | None = Field(None, pattern=r"^https?://[^@\s]+$")
    grafana_token: SecretRef | None = None
    pulumi: BotPulumi = BotPulumi()
    # a stage change in flight may finish after SIGTERM (a phased rollback waits scaleDownDelay)
    termination_grace: Duration = timedelta(minutes=15)
    resources: Resources = Resources(
        requests=ResourceQuantities(cpu="250m", memory="512Mi"),
        limits=ResourceQuantities(cpu="2", memory="2Gi"),
    )

    @field_validator("image")
    @classmethod
    def _pinned(cls, image: str) -> str:
        return pinned_image(image)

    @field_validator("termination_grace")
    @classmethod
    def _grace(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= value <= timedelta(hours=1):
            raise ValueError(f"must be between 1m and 1h: long enough to finish a stage change (got {format_duration(value)})")
        return value


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


def _utc_datetime(value: object) -> object:
    """ISO 8601 text (config arrives as JSON text from the CLI) to an aware UTC datetime."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"must be an ISO 8601 time like 2026-12-20T00:00:00Z (got {value!r})") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"needs a time zone, e.g. a trailing Z for UTC (got {value.isoformat()})")
        return value.astimezone(timezone.utc)
    return value


UtcDatetime = Annotated[datetime, BeforeValidator(_utc_datetime)]


class PromotionHours(Model):
    """When the bot may promote, in UTC (rollbacks are always allowed)."""

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(default=list(WEEKDAYS), min_length=1)
    start: str = Field("00:00", pattern=_CLOCK.pattern)
    end: str = Field("24:00", pattern=_CLOCK.pattern)

    @model_validator(mode="after")
    def _ordered(self) -> PromotionHours:
        if self.start >= self.end:
            raise ValueError(f"start {self.start} must be before end {self.end}")
        return self

    def allows(self, at: datetime) -> bool:
        moment = at.astimezone(timezone.utc)
        clock = moment.strftime("%H:%M")
        return WEEKDAYS[moment.weekday()] in self.days and self.start <= clock < self.end


class Freeze(Model):
    """No promotion from start to end (UTC); rollbacks are always allowed."""

    start: UtcDatetime
    end: UtcDatetime
    reason: str = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> Freeze:
        if self.start >= self.end:
            raise ValueError(f"start {self.start.isoformat()} must be before end {self.end.isoformat()}")
        return self


class ReleasePolicy(Model):
    promotion_hours: PromotionHours = PromotionHours()
    freezes: list[Freeze] = []


class ProjectSettings(Model):
    """Shared by every stage: project-level defaults in Pulumi.yaml."""

    stage_order: list[str] = list(STAGE_ORDER)
    release_flags: list[str] = list(DEFAULT_RELEASE_FLAGS)
    services: list[ServiceConfig] = Field(min_length=1)
    routing: RoutingConfig = RoutingConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    cluster: ClusterConfig
    release_policy: ReleasePolicy = ReleasePolicy()
    bot: BotConfig = BotConfig()

    @model_validator(mode="after")
    def _unique_service_names(self) -> ProjectSettings:
        # resource names, routes, gate names and alert labels are per service name, so a name
        # may appear once across all namespaces
        seen: dict[str, int] = {}
        for index, service in enumerate(self.services):
            if service.name in seen:
                raise ValueError(
                    f"services[{index}].name: {service.name!r} is already used by "
                    f"services[{seen[service.name]}]; service names must be unique"
                )
            seen[service.name] = index
        return self

    @model_validator(mode="after")
    def _namespaces_allowed(self) -> ProjectSettings:
        allowed = set(self.cluster.namespaces)
        used = [(f"services[{i}].namespace", s.namespace) for i, s in enumerate(self.services)]
        used.append(("monitoring.namespace", self.monitoring.namespace))
        if self.bot.mode == "cluster":
            used.append(("bot.namespace", self.bot.namespace))
        outside = [f"{where} {name!r}" for where, name in used if name not in allowed]
        if outside:
            raise ValueError(
                f"cluster.namespaces: {', '.join(outside)} not in the namespaces the program may "
                f"touch {sorted(allowed)} (this covers every namespaced object the program and the "
                "chart create; install mode also creates the cluster-scoped CRDs, ClusterRoles and "
                "ClusterRoleBindings listed in docs/stack.md, 'Cluster-scoped rights')"
            )
        return self

    @model_validator(mode="after")
    def _bot_reaches_the_cluster(self) -> ProjectSettings:
        """In cluster mode the bot's pod runs the program: its kubeconfig (generated, mounted) names
        the context cluster.context and authenticates with the pod's ServiceAccount token, so the
        program needs that context and no kubeconfig path of a person's machine."""
        if self.bot.mode != "cluster":
            return self
        if self.cluster.context is None or self.cluster.kubeconfig is not None:
            raise ValueError(
                "bot.mode cluster: set cluster.context and leave cluster.kubeconfig unset (the bot's pod "
                "mounts a kubeconfig defining that context with its ServiceAccount token; a path on a "
                "person's machine does not exist there), or set bot.mode external"
            )
        return self

    @field_validator("release_flags")
    @classmethod
    def _known_flags(cls, flags: list[str]) -> list[str]:
        unknown = sorted(set(flags) - set(FLAG_PARENTS))
        if unknown:
            raise ValueError(f"unknown flag(s) {unknown}; known flags: {sorted(FLAG_PARENTS)}")
        return flags

    @field_validator("stage_order")
    @classmethod
    def _order(cls, order: list[str]) -> list[str]:
        if len(order) < 2 or len(set(order)) != len(order):
            raise ValueError("needs at least two distinct stage names")
        return order


class StackConfig(Model):
    """Everything the program sees for one `pulumi up`: project defaults + one stage file."""

    project: ProjectSettings
    stage: Stage

    @model_validator(mode="after")
    def _achievable_split(self) -> StackConfig:
        problem = replica_ratio_problem(self.project, self.stage)
        if problem:
            raise ValueError(problem)
        return self


class Release(Model):
    """The whole release plan: project settings and every stage, in order."""

    project: ProjectSettings
    stages: list[Stage]
    # stage -> why its file cannot be used. Only a release loaded for the bot's safety paths has
    # any (rollout.config.load_release_lenient): a rollback must never need an unrelated file.
    unavailable: dict[str, str] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="after")
    def _progressive(self) -> Release:
        names = [stage.name for stage in self.stages]
        if names != self.project.stage_order:
            raise ValueError(f"stages {names} do not match stageOrder {self.project.stage_order}")
        if self.stages[0].weight != 0:
            raise ValueError(f"the first stage '{names[0]}' is the rollback target and needs weight 0")
        if self.stages[-1].weight != 100:
            raise ValueError(f"the last stage '{names[-1]}' needs weight 100 to complete the release")
        for stage in self.stages:
            problem = rollback_target_problem(stage, self.project.release_flags) or replica_ratio_problem(
                self.project, stage
            )
            if problem:
                raise ValueError(problem)
        for before, after in zip(self.stages, self.stages[1:]):
            if after.weight <= before.weight:
                raise ValueError(
                    f"weights must increase along the stage order: '{after.name}' ({after.weight}) "
                    f"comes after '{before.name}' ({before.weight})"
                )
        return self

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"unknown stage {name!r}; the stages are {', '.join(s.name for s in self.stages)}")

    def index(self, name: str) -> int:
        return [s.name for s in self.stages].index(self.stage(name).name)

    def next_stage(self, name: str) -> Stage | None:
        i = self.index(name)
        return self.stages[i + 1] if i + 1 < len(self.stages) else None

    @property
    def rollback_target(self) -> Stage:
        return self.stages[0]
