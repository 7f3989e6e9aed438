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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rollout.config import load_release
from rollout.release.transition import Transition, plan_transition
from rollout.release.transition import describe as describe_phases
from rollout.review.mock_runtime import RecordedResource, RenderedStack, render_stage

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
    stack: str = "prod"

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


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def _key(key: str) -> str:
    return f".{key}" if _IDENTIFIER.match(key) else f"[{json.dumps(key)}]"


def _named(items: list[Any]) -> bool:
    """A list of objects each with a unique `name` (containers, ports, env, backendRefs)."""
    names = [i.get("name") for i in items if isinstance(i, dict)]
    return len(names) == len(items) and all(isinstance(n, str) for n in names) and len(set(names)) == len(names)


def _as_json(value: Any) -> Any:
    # Embedded JSON documents (the flagd flags file) are compared field by field, not as one string.
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def flatten(value: Any, path: str = "") -> dict[str, Any]:
    """Leaf paths -> values. Named list items are addressed as `[name=x]`, so reordering or
    inserting an entry does not show up as every later entry changing."""
    value = _as_json(value)
    if isinstance(value, dict):
        if not value:
            return {path: {}}
        leaves: dict[str, Any] = {}
        for key, item in value.items():
            leaves.update(flatten(item, f"{path}{_key(str(key))}"))
        return leaves
    if isinstance(value, list):
        if not value:
            return {path: []}
        leaves = {}
        named = _named(value)
        for index, item in enumerate(value):
            segment = f"[name={item['name']}]" if named else f"[{index}]"
            leaves.update(flatten(item, path + segment))
        return leaves
    return {path: value}


def diff_inputs(old: dict[str, Any], new: dict[str, Any]) -> list[FieldChange]:
    before, after = flatten(old), flatten(new)
    changes = []
    for path in sorted(set(before) | set(after)):
        was, now = before.get(path, MISSING), after.get(path, MISSING)
        if was != now or type(was) is not type(now):
            changes.append(FieldChange(path.lstrip("."), was, now))
    return changes


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
    added = [ResourceChange(n, new[n].type, describe(new[n])) for n in sorted(set(new) - set(old))]
    removed = [ResourceChange(n, old[n].type, describe(old[n])) for n in sorted(set(old) - set(new))]
    changed = []
    for name in sorted(set(old) & set(new)):
        fields = diff_inputs(old[name].inputs, new[name].inputs)
        if old[name].type != new[name].type:
            fields.insert(0, FieldChange("(type)", old[name].type, new[name].type))
        if fields:
            changed.append(ResourceChange(name, new[name].type, describe(new[name]), fields))
    return PlanResult(
        from_stage,
        to_stage,
        before.outputs.get("weight"),
        after.outputs.get("weight"),
        added,
        removed,
        changed,
    )


def plan(project_dir: Path | str, from_stage: str, to_stage: str, stack: str = "prod") -> PlanResult:
    """The phases and the resource-level diff between two stage files' desired states (for
    review, not apply).

    Raises rollout.config.ConfigError naming the file, key path and rule if either is refused.
    """
    before = render_stage(project_dir, from_stage, stack=stack)
    after = render_stage(project_dir, to_stage, stack=stack)
    release = load_release(Path(project_dir))
    result = diff_stacks(before, after, from_stage, to_stage)
    transition = plan_transition(release.project, release.stage(from_stage), release.stage(to_stage))
    return replace(result, transition=transition, resources=after.outputs.get("services", {}), stack=stack)
