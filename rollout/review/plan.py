"""`rollout plan`: what changes between two stages' desired states, in which order, resource by
resource.

Both stage files are evaluated under the Pulumi mock runtime and the recorded inputs are
compared by logical name; the order of the change is rollout.release.transition's phases, with
the exact `pulumi up --target` commands (URNs from the rendered stack outputs). It is meant for review (a PR comment) and GitOps, not as a
replacement for `pulumi preview`: it knows nothing of live state, drift, provider defaults or
which changes the provider turns into replacements (`may_replace` is a hint for fields that
are immutable in Kubernetes).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from rollout.config import PROJECT_FILE, ConfigError, load_release, project_name, stage_file
from rollout.model import Release, step_back_problem
from rollout.release.transition import (
    COMPLETE,
    Change,
    Transition,
    completion,
    phase_urns,
    plan_transition,
)
from rollout.release.transition import describe as describe_phases
from rollout.review.mock_runtime import DEFAULT_STACK, RecordedResource, RenderedStack, render_stage

# Changing these makes Kubernetes (and so Pulumi) replace the object rather than update it.
IMMUTABLE_FIELDS = ("apiVersion", "kind", "metadata.name", "metadata.namespace", "spec.selector")
_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


@dataclass(frozen=True)
class FieldChange:
    path: str
    old: Any  # MISSING when the field is new
    new: Any  # MISSING when the field is gone


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class ResourceChange:
    name: str  # Pulumi logical name
    type: str
    object: str  # 'Kind namespace/name' for Kubernetes objects, else the type
    fields: list[FieldChange] = field(default_factory=list)
    urn: str = ""

    @property
    def may_replace(self) -> bool:
        return any(
            f.path == p or f.path.startswith(p + ".") or f.path.startswith(p + "[")
            for f in self.fields
            for p in IMMUTABLE_FIELDS
        )


@dataclass(frozen=True)
class PlanResult:
    from_stage: str
    to_stage: str
    from_weight: Any
    to_weight: Any
    added: list[ResourceChange]
    removed: list[ResourceChange]
    changed: list[ResourceChange]
    transition: Transition | None = None
    resources: dict[str, Any] = field(default_factory=dict)  # stack output `services`: URNs per role
    stack: str = DEFAULT_STACK

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    @property
    def resource_count(self) -> int:
        """Resources the promotion touches (added + removed + changed)."""
        return len(self.added) + len(self.removed) + len(self.changed)

    def summary(self) -> str:
        return (
            f"{len(self.changed)} changed, {len(self.added)} added, {len(self.removed)} removed"
        )

    def to_json(self) -> dict[str, Any]:
        """The contract other tools read (`rollout plan FROM TO --json`): the phases in order,
        each with its wait, the URNs it targets ([] = the whole stack) and what it changes track
        by track (`what`: replicas | weight | flags | pods | other), then the resource diff."""
        phases = []
        transition = self.transition
        assert transition is not None
        for index, phase in enumerate(transition.phases):
            changes = [c.as_json() for c in transition.track_changes(index)]
            if not phase.targeted:
                changes += [c.as_json() for c in self.other_changes()]
            phases.append({
                "name": phase.name,
                "wait_seconds": int(phase.wait.total_seconds()),
                "targets": phase_urns(phase, self.resources),
                "changes": changes,
            })
        return {
            "from": self.from_stage,
            "to": self.to_stage,
            "router": transition.router,
            "phases": phases,
            "diff": [_diff_json(c, kind) for kind, group in (("added", self.added), ("removed", self.removed), ("changed", self.changed)) for c in group],
        }

    def other_changes(self) -> list[Change]:
        """Changed resources no track role covers (alert rules, dashboards, ...): the final,
        untargeted update applies them."""
        covered: set[str] = set()
        for summary in self.resources.values():
            known = summary.get("resources", {}) if isinstance(summary, dict) else {}
            covered |= set(known.get("deployments", {}).values()) | set(known.get("flags", {}).values())
            covered |= set(known.get("routing", []))
        return [
            Change(None, None, "other", None, c.object)
            for group in (self.added, self.removed, self.changed)
            for c in group
            if c.urn not in covered
        ]

    def to_text(self) -> str:
        lines = [
            (
                f"Plan {self.from_stage} ({self.from_weight}%) -> {self.to_stage} ({self.to_weight}%): "
                f"{self.summary()}"
            ),
            "(desired state under the Pulumi mock runtime; `pulumi preview` is the authority)",
        ]
        if self.transition is not None:
            lines += ["", describe_phases(self.transition, self.resources, self.stack).rstrip(), ""]
        for mark, changes in (("+", self.added), ("-", self.removed)):
            lines += [f"{mark} {c.name}  {c.object}" for c in changes]
        for change in self.changed:
            note = "  [may replace]" if change.may_replace else ""
            lines.append(f"~ {change.name}  {change.object}{note}")
            lines += [f"    {f.path}: {' -> '.join(_show_pair(f.old, f.new))}" for f in change.fields]
        return "\n".join(lines) + "\n"

    def to_markdown(self) -> str:
        lines = [
            (
                f"### Rollout plan: `{self.from_stage}` ({self.from_weight}%) → "
                f"`{self.to_stage}` ({self.to_weight}%)"
            ),
            "",
            (
                f"**{self.summary()}**. Desired state rendered under the Pulumi mock runtime; "
                "`pulumi preview` remains the authority on what the engine will do."
            ),
            "",
        ]
        if self.transition is not None:
            lines += ["**Order of the change:**", "", "```", describe_phases(self.transition, self.resources, self.stack).rstrip(), "```", ""]
        if self.is_empty:
            return "\n".join(lines + ["No resource changes."]) + "\n"
        for title, changes in (("Added", self.added), ("Removed", self.removed)):
            if changes:
                lines += [f"**{title}:**", ""]
                lines += [f"- `{c.name}` {_md(c.object)}" for c in changes]
                lines.append("")
        if self.changed:
            lines += ["| resource | object | field | from | to |", "|---|---|---|---|---|"]
            for change in self.changed:
                name = f"`{change.name}`" + (" ⚠️ may replace" if change.may_replace else "")
                for f in change.fields:
                    old, new = _show_pair(f.old, f.new)
                    lines.append(
                        f"| {name} | {_md(change.object)} | `{_md(f.path)}` "
                        f"| `{_md(old)}` | `{_md(new)}` |"
                    )
        return "\n".join(lines) + "\n"


SHOW_LIMIT = 160  # characters of a value shown in text and markdown; FieldChange keeps it whole


def _show(value: Any, start: int = 0) -> str:
    """JSON of a value; a long one is cut to SHOW_LIMIT characters from `start`."""
    if value is MISSING:
        return "(absent)"
    text = json.dumps(value, sort_keys=True)
    if len(text) <= SHOW_LIMIT:
        return text
    start = max(0, min(start, len(text) - SHOW_LIMIT))
    head = "…" if start else ""
    tail = "…" if start + SHOW_LIMIT < len(text) else ""
    return f"{head}{text[start:start + SHOW_LIMIT]}{tail} ({len(text)} chars)"


def _show_pair(old: Any, new: Any) -> tuple[str, str]:
    """Both sides of a change; long strings are shown around their first difference."""
    start = 0
    if isinstance(old, str) and isinstance(new, str):
        a, b = json.dumps(old), json.dumps(new)
        same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        start = max(0, same - 40)
    return _show(old, start), _show(new, start)


def _diff_json(change: ResourceChange, kind: str) -> dict[str, Any]:
    return {
        "change": kind,
        "name": change.name,
        "type": change.type,
        "object": change.object,
        "may_replace": change.may_replace,
        "fields": [
            {"path": f.path, "from": None if f.old is MISSING else f.old, "to": None if f.new is MISSING else f.new}
            for f in change.fields
        ],
    }


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def _key(key: str) -> str:
    return f".{key}" if _IDENTIFIER.match(key) else f"[{json.dumps(key)}]"


# What names a list item: Kubernetes' `name` (containers, ports, env, backendRefs), and a
# Prometheus rule's `alert` or `record` (PrometheusRule groups hold rules, which have no `name`).
IDENTITY_KEYS = ("name", "alert", "record")


def _identity(item: Any) -> str | None:
    """`name=x`, `alert=X` or `record=x` for an item that carries one of them, else None."""
    if not isinstance(item, dict):
        return None
    for key in IDENTITY_KEYS:
        if isinstance(item.get(key), str):
            return f"{key}={item[key]}"
    return None


def _segments(items: list[Any]) -> list[str] | None:
    """`[identity]` per item when every item has one (a repeated identity, e.g. the same alert
    for two services, is told apart by its occurrence: `[alert=X#2]`); None for a plain list."""
    names = [_identity(i) for i in items]
    if not names or any(n is None for n in names):
        return None
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1  # type: ignore[index]
        out.append(f"[{name}]" if seen[name] == 1 else f"[{name}#{seen[name]}]")  # type: ignore[index]
    return out


def _as_json(value: Any) -> Any:
    # Embedded JSON documents (the flagd flags file) are compared field by field, not as one string.
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _walk(value: Any, path: str, leaves: dict[str, Any], items: dict[str, Any]) -> None:
    value = _as_json(value)
    if isinstance(value, dict):
        if not value:
            leaves[path] = {}
        for key, item in value.items():
            _walk(item, f"{path}{_key(str(key))}", leaves, items)
    elif isinstance(value, list):
        if not value:
            leaves[path] = []
        named = _segments(value)
        for index, item in enumerate(value):
            segment = named[index] if named else f"[{index}]"
            if named:
                items[path + segment] = item
            _walk(item, path + segment, leaves, items)
    else:
        leaves[path] = value


def flatten(value: Any, path: str = "") -> dict[str, Any]:
    """Leaf paths -> values. Named list items are addressed by identity (`[name=x]`,
    `[alert=X]`), so reordering or inserting an entry does not show up as every later entry
    changing."""
    leaves: dict[str, Any] = {}
    _walk(value, path, leaves, {})
    return leaves


def diff_inputs(old: dict[str, Any], new: dict[str, Any]) -> list[FieldChange]:
    """Changed leaves; a named item (an alert rule, a backendRef) that only one side has is one
    change holding the whole item, not a line per field."""
    before, after, old_items, new_items = {}, {}, {}, {}  # type: ignore[var-annotated]
    _walk(old, "", before, old_items)
    _walk(new, "", after, new_items)
    whole = sorted(set(old_items) ^ set(new_items))
    whole = [p for p in whole if not any(p != q and p.startswith(q) for q in whole)]  # outermost only

    def inside(path: str) -> bool:
        return any(path == p or path.startswith(p + ".") or path.startswith(p + "[") for p in whole)

    changes = [FieldChange(p.lstrip("."), old_items.get(p, MISSING), new_items.get(p, MISSING)) for p in whole]
    for path in sorted(set(before) | set(after)):
        if inside(path):
            continue
        was, now = before.get(path, MISSING), after.get(path, MISSING)
        if was != now or type(was) is not type(now):
            changes.append(FieldChange(path.lstrip("."), was, now))
    return sorted(changes, key=lambda c: c.path)


def describe(resource: RecordedResource) -> str:
    metadata = resource.inputs.get("metadata")
    kind = resource.inputs.get("kind")
    if kind and isinstance(metadata, dict) and metadata.get("name"):
        where = f"{metadata['namespace']}/" if metadata.get("namespace") else ""
        return f"{kind} {where}{metadata['name']}"
    return resource.type


def diff_stacks(
    before: RenderedStack, after: RenderedStack, from_stage: str, to_stage: str
) -> PlanResult:
    old, new = before.resources, after.resources
    added = [ResourceChange(n, new[n].type, describe(new[n]), urn=new[n].urn) for n in sorted(set(new) - set(old))]
    removed = [ResourceChange(n, old[n].type, describe(old[n]), urn=old[n].urn) for n in sorted(set(old) - set(new))]
    changed = []
    for name in sorted(set(old) & set(new)):
        fields = diff_inputs(old[name].inputs, new[name].inputs)
        if old[name].type != new[name].type:
            fields.insert(0, FieldChange("(type)", old[name].type, new[name].type))
        if fields:
            changed.append(ResourceChange(name, new[name].type, describe(new[name]), fields, urn=new[name].urn))
    return PlanResult(
        from_stage,
        to_stage,
        before.outputs.get("weight"),
        after.outputs.get("weight"),
        added,
        removed,
        changed,
    )


def plan(project_dir: Path | str, from_stage: str, to_stage: str, stack: str = DEFAULT_STACK) -> PlanResult:
    """The phases and the resource-level diff between two stage files' desired states (for
    review, not apply). `to_stage` may be `complete` (after the last stage): the completion of
    the release, rendered from a copy of the project with the completion's edits made.

    Raises rollout.config.ConfigError naming the file, key path and rule if either is refused,
    or the change is not one the release makes (a step back to a lower weight above 0).
    """
    project_dir = Path(project_dir)
    release = load_release(project_dir)
    if to_stage == COMPLETE:
        return _plan_completion(project_dir, release, from_stage, stack)
    before = render_stage(project_dir, from_stage, stack=stack)
    after = render_stage(project_dir, to_stage, stack=stack)
    source, target = release.stage(from_stage), release.stage(to_stage)
    problem = step_back_problem(release.rollback_target.name, source.weight, target)
    if problem:
        raise ConfigError(f"Pulumi.{to_stage}.yaml", [problem])
    result = diff_stacks(before, after, from_stage, to_stage)
    transition = plan_transition(release.project, source, target)
    return replace(result, transition=transition, resources=after.outputs.get("services", {}), stack=stack)


def _plan_completion(project_dir: Path, release: Release, from_stage: str, stack: str) -> PlanResult:
    last = release.stages[-1].name
    if from_stage != last:
        raise ConfigError(
            f"Pulumi.{from_stage}.yaml",
            [f"a release completes from its last stage '{last}', not from '{from_stage}'"],
        )
    transition = completion(release)
    first = release.rollback_target.name
    with tempfile.TemporaryDirectory(prefix="rollout-complete-") as tmp:
        completed = completed_project(project_dir, release, Path(tmp))
        after = render_stage(completed, first, stack=stack)
    before = render_stage(project_dir, last, stack=stack)
    result = diff_stacks(before, after, last, COMPLETE)
    return replace(result, transition=transition, resources=after.outputs.get("services", {}), stack=stack)


def completed_project(project_dir: Path, release: Release, into: Path) -> Path:
    """A copy of the project's Pulumi files with the completion's edits made (the released image
    becomes stable, no release flags, the rollback target takes the last stage's flags)."""
    namespace = project_name(project_dir)
    for path in project_dir.glob("Pulumi*.yaml"):
        shutil.copy(path, into / path.name)
    project_file = into / PROJECT_FILE
    data = yaml.safe_load(project_file.read_text())
    config = data["config"]
    for service in config[f"{namespace}:services"]["value"]:
        service["stable"] = dict(service["canary"])
    config[f"{namespace}:releaseFlags"] = {"value": []}
    project_file.write_text(yaml.safe_dump(data, sort_keys=False))
    first = stage_file(into, release.rollback_target.name)
    stage = yaml.safe_load(first.read_text())
    last = yaml.safe_load(stage_file(project_dir, release.stages[-1].name).read_text())
    stage["config"][f"{namespace}:flags"] = last["config"][f"{namespace}:flags"]
    first.write_text(yaml.safe_dump(stage, sort_keys=False))
    return into
