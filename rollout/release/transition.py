"""A stage change in phases: traffic moves to a track only once it has the ready pods its new
share needs, and leaves a track before that track scales down. Pure: stages in, phases out.

Every phase is the same `pulumi up --stack prod --config-file Pulumi.<target>.yaml`, the early
ones limited with `--target` (pulumi-kubernetes waits until a Deployment's new replicas are
ready before it reports the update done):

1. scale-up: the Deployments that grow (`--target` them);
2. shift: the routing objects whose weights change and the canary's flags ConfigMap, only when a
   Deployment shrinks afterwards (otherwise the final update shifts, after the scale-up);
3. the final update, untargeted, which converges everything else: a shrinking Deployment (after
   `routing.scaleDownDelay`, Argo Rollouts' scaleDownDelaySeconds), the stage's alert rules and
   dashboard, the stack outputs.

A promotion is scale-up, then shift. A rollback is shift, wait, scale-down. With the
replica-ratio router traffic follows ready pods: the receiving track scales up, then the other
one down. The program's own resource dependencies give the same order within one update
(components/weighted_service.py), so a person applying a promotion with one `pulumi up` is
safe too; a rollback by hand takes the two commands `rollout plan` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Mapping

from rollout.model import (
    TRACKS,
    ProjectSettings,
    Split,
    Stage,
    format_duration,
    split_for,
)

# roles a phase targets, resolved to URNs through the stack output services.<name>.resources
ROUTING = "routing"


def deployment_role(track: str) -> str:
    return f"deployment:{track}"


def flags_role(track: str) -> str:
    return f"flags:{track}"


@dataclass(frozen=True)
class Phase:
    name: str  # scale-up | shift | scale-down | apply
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


@dataclass(frozen=True)
class Transition:
    source: str
    target: str
    router: str
    phases: tuple[Phase, ...]
    # states[0] before the first phase, states[i] after phase i: (service, track) -> state
    states: tuple[Mapping[tuple[str, str], TrackState], ...] = field(default=())

    def marker(self, index: int) -> str:
        """`[1/2 scale-up]` for update messages; '' when the change is a single update."""
        if len(self.phases) < 2:
            return ""
        return f"[{index + 1}/{len(self.phases)} {self.phases[index].name}]"


def _splits(project: ProjectSettings, stage: Stage) -> dict[str, Split]:
    router = project.routing.router
    return {s.name: split_for(router, s.replicas, stage.weight) for s in project.services}


def _state(before: Mapping[str, Split], replicas: Mapping[tuple[str, str], int], weights: Mapping[str, Split], weighted: bool):
    state = {}
    for service, split in before.items():
        total = sum(replicas[(service, t)] for t in TRACKS)
        for track in TRACKS:
            count = replicas[(service, track)]
            if weighted:
                weight = weights[service].weight(track)
            else:  # traffic follows ready pods
                weight = round(100 * count / total) if total else 0
            state[(service, track)] = TrackState(count, weight)
    return state


def plan_transition(project: ProjectSettings, source: Stage, target: Stage) -> Transition:
    """The phases that take every service from `source`'s split and flags to `target`'s."""
    router = project.routing.router
    weighted = router != "replica-ratio"
    before, after = _splits(project, source), _splits(project, target)
    grow, shrink, shift, grow_lines, shrink_lines, shift_lines = [], [], [], [], [], []
    for service in before:
        a, b = before[service], after[service]
        for track in TRACKS:
            old, new = a.replicas(track), b.replicas(track)
            if new > old:
                grow.append((service, deployment_role(track)))
                grow_lines.append(f"{service}: {track} replicas {old} -> {new} (pulumi waits until they are ready)")
            elif new < old:
                shrink.append((service, deployment_role(track)))
                shrink_lines.append(f"{service}: {track} replicas {old} -> {new}")
        if weighted and (a.stable_weight, a.canary_weight) != (b.stable_weight, b.canary_weight):
            shift.append((service, ROUTING))
            shift_lines.append(
                f"{service}: weights stable/canary {a.stable_weight}/{a.canary_weight} -> "
                f"{b.stable_weight}/{b.canary_weight}"
            )
        elif not weighted and (a.canary_weight != b.canary_weight):
            shift_lines.append(f"{service}: canary share follows the ready pods, {a.canary_weight}% -> {b.canary_weight}%")
        if source.flags != target.flags:
            shift.append((service, flags_role("canary")))
            changed = sorted(f for f in target.flags.values if target.flags.values[f] != source.flags.values[f])
            shown = ", ".join(f"{f} {'on' if target.flags.enabled(f) else 'off'}" for f in changed[:4])
            more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
            shift_lines.append(f"{service}: canary flags {shown}{more}")

    if not weighted and grow:
        # no routing objects: the receiving track's new pods are the shift; its flags go with them
        grow, grow_lines, shift, shift_lines = grow + shift, grow_lines + shift_lines, [], []
    phases: list[Phase] = []
    if grow:
        phases.append(Phase("scale-up", tuple(grow), timedelta(0), tuple(grow_lines)))
    rest = "everything else the stage changes (rules, dashboard, outputs)"
    if shrink:
        if shift:
            phases.append(Phase("shift", tuple(shift), timedelta(0), tuple(shift_lines)))
        lines = ([] if shift else shift_lines) + shrink_lines + [rest]
        phases.append(Phase("scale-down", (), project.routing.scale_down_delay, tuple(lines)))
    else:
        name = "shift" if (shift or shift_lines) else "apply"
        phases.append(Phase(name, (), timedelta(0), (*shift_lines, rest)))

    # the state after each phase, for review and for the invariant checks
    replicas = {(s, t): before[s].replicas(t) for s in before for t in TRACKS}
    weights = dict(before)
    states = [_state(before, replicas, weights, weighted)]
    for phase in phases:
        targeted = set(phase.roles)
        for service in before:
            for track in TRACKS:
                if not phase.targeted or (service, deployment_role(track)) in targeted:
                    replicas[(service, track)] = after[service].replicas(track)
            if not phase.targeted or (service, ROUTING) in targeted:
                weights[service] = after[service]
        states.append(_state(before, replicas, weights, weighted))
    return Transition(source.name, target.name, router, tuple(phases), tuple(states))


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
    for index, phase in enumerate(transition.phases):
        wait = f" after {format_duration(phase.wait)}" if phase.wait else ""
        scope = "targeted" if phase.targeted else "whole stack"
        out.append(f"  {index + 1}. {phase.name}{wait} ({scope})")
        out += [f"       {line}" for line in phase.changes]
        if resources is not None:
            urns = phase_urns(phase, resources)
            targets = " ".join(f"--target '{u}'" for u in urns)
            out.append(f"       $ pulumi up --stack {stack} --config-file Pulumi.{transition.target}.yaml {targets}".rstrip())
    return "\n".join(out) + "\n"
