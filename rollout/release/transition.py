"""A stage change in phases. Pure: stages in, phases out. Three rules, checked over every phase
(tests/release/test_transition.py, tests/review/test_plan_contract.py):

- traffic moves to a track only once it has the ready pods its new share needs, and leaves a
  track before that track scales down (after `routing.scaleDownDelay`, Argo Rollouts'
  scaleDownDelaySeconds);
- a track's flags are in effect on its pods before its share grows: its flags ConfigMap changes in
  an earlier phase and the change waits `routing.flagsPropagation` (the kubelet projects a
  ConfigMap into running pods within about a minute, flagd's in-process providers poll the file
  every 5 s), unless the track had no pods before or its pods roll (new pods read the new file
  at start: the Deployment depends on its ConfigMap);
- flags of a track losing traffic change last, with its scale-down (a rollback stays fast).

Every phase is the same `pulumi up --stack prod --config-file Pulumi.<stage>.yaml`, the early
ones limited with `--target` (pulumi-kubernetes waits until a Deployment's new replicas are
ready before it reports the update done); the last one is untargeted and converges everything
else (alert rules, dashboard, outputs).

A promotion is scale-up (with the canary's new flags), wait for the flags, shift. A rollback is
shift, wait, scale-down (with the canary's flags). With the replica-ratio router traffic follows
ready pods, so a gaining track's flags get a phase of their own before its pods grow. The
completion of a release (`completion`) rolls the stable pods to the released image with the
released flags before traffic returns to them. The program's own resource dependencies give the
promotion order within one update (components/weighted_service.py); a step back to a lower
weight above 0 is refused, by `rollout plan` and by the program (rollout.model.step_back_problem).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Mapping

from rollout.model import (
    TRACKS,
    FeatureFlags,
    ProjectSettings,
    Release,
    Split,
    Stage,
    format_duration,
    split_for,
)

# roles a phase targets, resolved to URNs through the stack output services.<name>.resources
ROUTING = "routing"
COMPLETE = "complete"  # `rollout plan <last stage> complete`: the completion of a release
# what a change is, in `rollout plan --json` (a contract other tools read)
WHAT = ("replicas", "weight", "flags", "pods", "other")
FLAGS_SHOWN = 4  # flags named per line for people; the JSON carries them all


def deployment_role(track: str) -> str:
    return f"deployment:{track}"


def flags_role(track: str) -> str:
    return f"flags:{track}"


@dataclass(frozen=True)
class Phase:
    name: str  # flags | scale-up | shift | scale-down | apply
    roles: tuple[tuple[str, str], ...]  # (service, role) to --target; () = the whole stack
    wait: timedelta  # before this phase starts
    changes: tuple[str, ...]  # what it changes, for people

    @property
    def targeted(self) -> bool:
        return bool(self.roles)


@dataclass(frozen=True)
class TrackState:
    replicas: int
    weight: int  # percent of the service's traffic
    flags: Mapping[str, bool] = field(default_factory=dict)  # the track's flags file
    image: str = ""  # the pod template's image


@dataclass(frozen=True)
class Change:
    """One thing a phase changes on one track: `what` in WHAT, `old` -> `new`."""

    service: str | None
    track: str | None
    what: str
    old: Any
    new: Any

    def as_json(self) -> dict[str, Any]:
        return {"service": self.service, "track": self.track, "what": self.what, "from": self.old, "to": self.new}


@dataclass(frozen=True)
class Transition:
    source: str
    target: str
    router: str
    phases: tuple[Phase, ...]
    # states[0] before the first phase, states[i] after phase i: (service, track) -> state
    states: tuple[Mapping[tuple[str, str], TrackState], ...] = field(default=())
    apply_stage: str = ""  # the stage file every phase applies ('' = target)
    edits: tuple[str, ...] = ()  # file edits to make before the first phase (the completion)

    @property
    def stage_file_stage(self) -> str:
        return self.apply_stage or self.target

    def marker(self, index: int) -> str:
        """`[1/2 scale-up]` for update messages; '' when the change is a single update."""
        if len(self.phases) < 2:
            return ""
        return f"[{index + 1}/{len(self.phases)} {self.phases[index].name}]"

    def track_changes(self, index: int) -> list[Change]:
        """What phase `index` changes, track by track, from the states before and after it."""
        return _changes(self.states[index], self.states[index + 1])


def _changes(before: Mapping[tuple[str, str], TrackState], after: Mapping[tuple[str, str], TrackState]) -> list[Change]:
    out: list[Change] = []
    for (service, track), now in after.items():
        was = before[(service, track)]
        if now.image != was.image:
            out.append(Change(service, track, "pods", was.image, now.image))
        if now.flags != was.flags:
            changed = sorted(f for f in now.flags if was.flags.get(f) != now.flags[f])
            out.append(Change(service, track, "flags", {f: was.flags.get(f) for f in changed}, {f: now.flags[f] for f in changed}))
        if now.replicas != was.replicas:
            out.append(Change(service, track, "replicas", was.replicas, now.replicas))
        if now.weight != was.weight:
            out.append(Change(service, track, "weight", was.weight, now.weight))
    return out


def _splits(project: ProjectSettings, stage: Stage) -> dict[str, Split]:
    router = project.routing.router
    return {s.name: split_for(router, s.replicas, stage.weight) for s in project.services}


def _images(project: ProjectSettings) -> dict[tuple[str, str], str]:
    return {(s.name, t): (s.stable if t == "stable" else s.canary).image for s in project.services for t in TRACKS}


def _weights(split: Split, replicas: Mapping[str, int], weighted: bool) -> dict[str, int]:
    if weighted:
        return {t: split.weight(t) for t in TRACKS}
    total = sum(replicas.values())  # traffic follows ready pods
    return {t: round(100 * replicas[t] / total) if total else 0 for t in TRACKS}


def plan_transition(
    project: ProjectSettings,
    source: Stage,
    target: Stage,
    *,
    stable_flags: tuple[FeatureFlags, FeatureFlags] | None = None,
    target_project: ProjectSettings | None = None,
) -> Transition:
    """The phases that take every service from `source`'s split and flags to `target`'s.

    `stable_flags` is the stable track's flags file before and after (by default the stable
    flags are not modelled: they are the rollback target's in every stage, so they never change);
    `target_project` the project settings after the change when they differ (the completion
    gives the stable track the released image)."""
    after_project = target_project or project
    router = project.routing.router
    weighted = router != "replica-ratio"
    if stable_flags is None:
        stable_before = stable_after = {}
    else:
        stable_before, stable_after = dict(stable_flags[0].values), dict(stable_flags[1].values)
    flags = {
        "stable": (stable_before, stable_after),
        "canary": (dict(source.flags.values), dict(target.flags.values)),
    }
    before, after = _splits(project, source), _splits(after_project, target)
    images_before, images_after = _images(project), _images(after_project)
    start: dict[tuple[str, str], TrackState] = {}
    end: dict[tuple[str, str], TrackState] = {}
    for service in before:
        w0 = _weights(before[service], {t: before[service].replicas(t) for t in TRACKS}, weighted)
        w1 = _weights(after[service], {t: after[service].replicas(t) for t in TRACKS}, weighted)
        for track in TRACKS:
            key = (service, track)
            start[key] = TrackState(before[service].replicas(track), w0[track], flags[track][0], images_before[key])
            end[key] = TrackState(after[service].replicas(track), w1[track], flags[track][1], images_after[key])

    grow, shrink, rolls, early_flags, waiting_flags = [], [], [], [], []
    weights_move = False
    for (service, track), was in start.items():
        now = end[(service, track)]
        deployment = (service, deployment_role(track))
        if now.replicas > was.replicas:
            grow.append(deployment)
        elif now.replicas < was.replicas:
            shrink.append(deployment)
        rolled = now.image != was.image and now.replicas > 0
        if rolled and deployment not in grow:
            rolls.append(deployment)
        weights_move |= now.weight != was.weight
        if now.flags != was.flags and (now.weight > was.weight or rolled):
            # the track gains traffic (or its pods roll): its flags first
            early_flags.append((service, flags_role(track)))
            if was.replicas > 0 and not rolled and now.weight > was.weight:
                waiting_flags.append((service, flags_role(track)))

    propagation = project.routing.flags_propagation if waiting_flags else timedelta(0)
    rest = (*grow, *rolls, *[f for f in early_flags if f not in waiting_flags])
    plan: list[tuple[str, tuple[tuple[str, str], ...], timedelta]] = []
    if weighted:
        if rest or waiting_flags:
            name = "scale-up" if (grow or rolls) else "flags"
            plan.append((name, (*rest, *waiting_flags), timedelta(0)))
        shift_wait = propagation
        if weights_move and shrink:
            plan.append(("shift", tuple((s, ROUTING) for s in before), shift_wait))
            plan.append(("scale-down", (), project.routing.scale_down_delay))
        elif weights_move:
            plan.append(("shift", (), shift_wait))
        else:
            plan.append(("apply", (), timedelta(0)))
    else:
        # traffic follows ready pods, so the scale-up is the shift: a gaining track's flags go first
        if early_flags:
            plan.append(("flags", tuple(early_flags), timedelta(0)))
        scale = tuple(r for r in rest if r not in early_flags)
        if scale:
            plan.append(("scale-up", scale, propagation))
        if shrink:
            plan.append(("scale-down", (), project.routing.scale_down_delay if scale else max(propagation, project.routing.scale_down_delay)))
        else:
            plan.append(("shift" if weights_move else "apply", (), timedelta(0) if scale else propagation))

    # the state after each phase, for review and for the invariant checks
    states = [dict(start)]
    state = dict(start)
    for _, roles, _ in plan:
        targeted = set(roles)
        nxt = {}
        for service in before:
            moved = not roles or (service, ROUTING) in targeted
            replicas = {}
            for track in TRACKS:
                key, was, now = (service, track), state[(service, track)], end[(service, track)]
                deployed = not roles or (service, deployment_role(track)) in targeted
                flagged = not roles or (service, flags_role(track)) in targeted
                replicas[track] = now.replicas if deployed else was.replicas
                nxt[key] = TrackState(
                    replicas[track],
                    was.weight,
                    now.flags if flagged else was.flags,
                    now.image if deployed else was.image,
                )
            if weighted:
                for track in TRACKS:
                    if moved:
                        nxt[(service, track)] = _with_weight(nxt[(service, track)], end[(service, track)].weight)
            else:
                shares = _weights(before[service], replicas, weighted=False)
                for track in TRACKS:
                    nxt[(service, track)] = _with_weight(nxt[(service, track)], shares[track])
        states.append(nxt)
        state = nxt
    phases = []
    for index, (name, roles, wait) in enumerate(plan):
        lines = _lines(_changes(states[index], states[index + 1]), weighted)
        if not roles:
            lines.append("everything else the stage changes (rules, dashboard, outputs)")
        phases.append(Phase(name, roles, wait, tuple(lines)))
    return Transition(source.name, target.name, router, tuple(phases), tuple(states))


def _with_weight(state: TrackState, weight: int) -> TrackState:
    return TrackState(state.replicas, weight, state.flags, state.image)


def _lines(changes: list[Change], weighted: bool) -> list[str]:
    """The changes of one phase as lines for people."""
    lines: list[str] = []
    weights: dict[str, dict[str, Change]] = {}
    for change in changes:
        if change.what == "weight":
            weights.setdefault(change.service or "", {})[change.track or ""] = change
    for service, by_track in weights.items():
        if weighted and len(by_track) == 2:
            a, b = by_track["stable"], by_track["canary"]
            lines.append(f"{service}: weights stable/canary {a.old}/{b.old} -> {a.new}/{b.new}")
        elif not weighted and "canary" in by_track:
            c = by_track["canary"]
            lines.append(f"{service}: canary share follows the ready pods, {c.old}% -> {c.new}%")
    for change in changes:
        who = f"{change.service}: {change.track}"
        if change.what == "pods":
            lines.append(f"{who} pods roll {change.old} -> {change.new} (pulumi waits for the rollout)")
        elif change.what == "replicas":
            ready = " (pulumi waits until they are ready)" if change.new > change.old else ""
            lines.append(f"{who} replicas {change.old} -> {change.new}{ready}")
        elif change.what == "flags":
            names = list(change.new)
            shown = ", ".join(f"{f} {'on' if change.new[f] else 'off'}" for f in names[:FLAGS_SHOWN])
            more = f" and {len(names) - FLAGS_SHOWN} more" if len(names) > FLAGS_SHOWN else ""
            lines.append(f"{who} flags {shown}{more}")
    return lines


def completion(release: Release) -> Transition:
    """The completion of a release, after the last stage held: the stable track becomes the
    released version (the canary's image, the last stage's flags), then traffic returns to it
    and the canary scales to 0. The stable pods roll with their new flags file before any
    traffic moves to them. The file edits are rollout.review.plan.completed_project's."""
    last, target = release.stages[-1], release.rollback_target
    services = [s.model_copy(update={"stable": s.canary}) for s in release.project.services]
    after_project = release.project.model_copy(update={"services": services, "release_flags": []})
    after_target = target.model_copy(update={"flags": last.flags})
    transition = plan_transition(
        release.project, last, after_target, stable_flags=(target.flags, last.flags), target_project=after_project
    )
    first = target.name
    edits = tuple(
        [f"Pulumi.yaml: services[{i}].stable = services[{i}].canary ({s.canary.image})" for i, s in enumerate(release.project.services)]
        + ["Pulumi.yaml: releaseFlags: []", f"Pulumi.{first}.yaml: flags = the flags of Pulumi.{last.name}.yaml"]
    )
    return Transition(
        last.name, COMPLETE, transition.router, transition.phases, transition.states, apply_stage=first, edits=edits
    )


# --------------------------------------------------------------------------- URNs and commands


class MissingResources(KeyError):
    """The stack outputs do not say which resources a phase targets (an older program)."""


def phase_urns(phase: Phase, resources: Mapping[str, Any]) -> list[str]:
    """The URNs to `--target` for a phase, from the stack output `services` (name -> summary
    with `resources`: deployments, routing, flags)."""
    urns: list[str] = []
    for service, role in phase.roles:
        try:
            known = resources[service]["resources"]
            if role == ROUTING:
                urns += list(known["routing"])
            else:
                kind, track = role.split(":")
                urns.append(known["deployments" if kind == "deployment" else "flags"][track])
        except (KeyError, TypeError) as err:
            raise MissingResources(f"no URN for {service} {role} in the stack outputs") from err
    return urns


def describe(transition: Transition, resources: Mapping[str, Any] | None = None, stack: str = "prod") -> str:
    """The phases in order with what each changes and its command."""
    count = len(transition.phases)
    out = [f"Stage change {transition.source} -> {transition.target}: {count} phase{'s' if count > 1 else ''} ({transition.router})"]
    if transition.edits:
        out.append("  first edit:")
        out += [f"       {edit}" for edit in transition.edits]
    for index, phase in enumerate(transition.phases):
        wait = f" after {format_duration(phase.wait)}" if phase.wait else ""
        scope = "targeted" if phase.targeted else "whole stack"
        out.append(f"  {index + 1}. {phase.name}{wait} ({scope})")
        out += [f"       {line}" for line in phase.changes]
        if resources is not None:
            urns = phase_urns(phase, resources)
            targets = " ".join(f"--target '{u}'" for u in urns)
            out.append(f"       $ pulumi up --stack {stack} --config-file Pulumi.{transition.stage_file_stage}.yaml {targets}".rstrip())
    return "\n".join(out) + "\n"
