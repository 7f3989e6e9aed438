"""Run the Pulumi program under the SDK's own mock runtime and record what it registers.

There is no Pulumi CLI or engine here (and none in CI): `pulumi up` is what users run. This
module evaluates the very same program (`__main__.py`) in-process with `pulumi.runtime.set_mocks`
so `rollout render`, `rollout plan`, the benchmarks and the tests see every resource the program
would register, with its inputs, exactly as the engine would receive them.

Config reaches the program as the CLI would hand it over: Pulumi.yaml project defaults merged
key by key with one stage file (`rollout.config.merge_config`), every value as a string
(objects and lists as JSON text). A value written as `{secure: ...}` is passed as a secret key,
as the CLI does after decrypting it, so the program's no-secrets rule is exercised too.

Known limits of the mock runtime (see docs/stack.md): the engine is not involved, so provider-side
defaults, diffs against live state and `register_outputs` are not there; registration order is not
deterministic, hence resources are keyed by name.
"""

from __future__ import annotations

import json
import os
import runpy
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings

from rollout.config import (
    REPO_ROOT,
    merge_config,
    no_stage_file,
    project_defaults,
    project_name,
    stack_values,
    stage_file,
)

PROGRAM_FILE = "__main__.py"
DEFAULT_STACK = "prod"
SECRET_PLACEHOLDER = "[secret]"
ROOT_STACK_TYPE = "pulumi:pulumi:Stack"


@dataclass(frozen=True)
class RecordedResource:
    """One registration the program made: what `pulumi up` would send to the engine."""

    type: str
    name: str
    urn: str
    inputs: dict[str, Any]
    custom: bool  # True for provider resources (Kubernetes objects), False for components
    parent_urn: str | None  # None only for resources parented directly to nothing
    provider: str | None = None  # 'urn::id' of the explicit provider, as the engine receives it
    providers: dict[str, str] = field(default_factory=dict)  # a component's providers by package
    dependencies: tuple[str, ...] = ()  # URNs this resource waits for (depends_on and inputs)

    @property
    def parent(self) -> str | None:
        """The parent's logical name; None when the parent is the root Stack."""
        if not self.parent_urn or "::pulumi:pulumi:Stack::" in self.parent_urn:
            return None
        return self.parent_urn.rsplit("::", 1)[-1]

    @property
    def is_kubernetes(self) -> bool:
        return self.custom and self.type.startswith("kubernetes:")


@dataclass(frozen=True)
class RenderedStack:
    """The program's desired state: resources keyed by logical name, and the stack exports."""

    resources: dict[str, RecordedResource]
    outputs: dict[str, Any]
    project: str = ""
    stack: str = DEFAULT_STACK

    def of_type(self, type_: str) -> list[RecordedResource]:
        """Resources of one type token (e.g. 'kubernetes:apps/v1:Deployment'), sorted by name."""
        return [r for _, r in sorted(self.resources.items()) if r.type == type_]

    def subtree(self, name: str) -> list[RecordedResource]:
        """A resource and everything under it (children, grandchildren...), sorted by name."""
        def under(record: RecordedResource) -> bool:
            parent = record.parent
            while parent is not None:
                if parent == name:
                    return True
                parent = self.resources[parent].parent if parent in self.resources else None
            return False

        return [r for n, r in sorted(self.resources.items()) if n == name or under(r)]

    def kubernetes_objects(self) -> list[RecordedResource]:
        """Every Kubernetes object (custom resources of the kubernetes provider), sorted by name."""
        return [r for _, r in sorted(self.resources.items()) if r.is_kubernetes]


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    """Records every registration; a resource's state is its inputs (no provider to add more)."""

    registrations: list[RecordedResource] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # The mock monitor calls new_resource on the thread handling that registration; the parent
    # URN is not in MockResourceArgs, so the monitor leaves it here for that thread.
    _current: threading.local = field(default_factory=threading.local)

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict]:
        request = getattr(self._current, "request", None)
        record = RecordedResource(
            type=args.typ,
            name=args.name,
            urn=getattr(self._current, "urn", ""),
            inputs=plain_numbers(dict(args.inputs)),
            custom=bool(args.custom),
            parent_urn=(request.parent or None) if request is not None else None,
            provider=args.provider or None,
            providers=dict(request.providers) if request is not None else {},
            dependencies=tuple(request.dependencies) if request is not None else (),
        )
        with self._lock:
            self.registrations.append(record)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict, None]:
        # The program makes no provider function calls; answer empty rather than invent data.
        return {}, None


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, passing each registration's parent and URN to RecordingMocks."""

    def __init__(self, mocks: RecordingMocks):
        super().__init__(mocks)
        self.recorder = mocks

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        """The engine's URN: the parent's whole type chain, then `$type`, with the root Stack
        left out (as the engine and the SDK's `pulumi.runtime.resource.create_urn` build it). The
        SDK mock keeps only the parent's last type, so a grandchild's URN would not match what
        `pulumi up --target` needs."""
        qualified = parent.split("::")[2] if parent else ROOT_STACK_TYPE
        if qualified != ROOT_STACK_TYPE:
            type_ = qualified + "$" + type_
        return "urn:pulumi:" + "::".join([pulumi.get_stack(), pulumi.get_project(), type_, name])

    def RegisterResource(self, request):
        current = self.recorder._current
        current.request = request
        current.urn = self.make_urn(request.parent, request.type, request.name)
        try:
            return super().RegisterResource(request)
        finally:
            current.request = None
            current.urn = ""


class DuplicateResourceName(RuntimeError):
    """Two registrations share a logical name, so they cannot be keyed by name."""


def plain_numbers(value: Any) -> Any:
    """Integral floats back to ints: the wire format (protobuf Struct) carries every number as a
    double, so `replicas: 10` arrives as 10.0; Kubernetes schemas want integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: plain_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_numbers(v) for v in value]
    return value


def _contains_secure(value: Any) -> bool:
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return True
        return any(_contains_secure(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_secure(v) for v in value)
    return False


def _hide_secure(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return SECRET_PLACEHOLDER
        return {k: _hide_secure(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide_secure(v) for v in value]
    return value


def _iso(value: Any) -> str:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a config value")


def config_strings(values: Mapping[str, Any], namespace: str) -> tuple[dict[str, str], list[str]]:
    """Bare config values -> the CLI's wire form: {'ns:key': string}, plus the secret keys.

    Strings pass as they are, everything else as JSON text (the CLI sends `true`, `10` and
    objects as JSON). Ciphertext never reaches the program: a `{secure: ...}` value becomes a
    placeholder and its key is marked secret, so the program can refuse it by name.
    """
    strings: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in values.items():
        full_key = key if ":" in key else f"{namespace}:{key}"
        if _contains_secure(value):
            secret_keys.append(full_key)
            value = _hide_secure(value)
        # the CLI hands YAML timestamps over as text too
        strings[full_key] = value if isinstance(value, str) else json.dumps(value, default=_iso)
    return strings, secret_keys


def values_for_stage(project_dir: Path | str, stage: str) -> dict[str, Any]:
    """What `pulumi up --config-file Pulumi.<stage>.yaml` gives the program, as bare keys.

    Pulumi.yaml defaults merged with the stage file exactly like the CLI does. Not validated
    here: the program validates, so a bad file is refused by the program itself.
    """
    project_dir = Path(project_dir)
    path = stage_file(project_dir, stage)
    if not path.exists():
        raise no_stage_file(project_dir, stage)
    namespace = project_name(project_dir)
    return merge_config(project_defaults(project_dir), stack_values(path, namespace))


def program_from_file(path: Path | str) -> Callable[[], None]:
    """A program callable that runs a Pulumi `__main__.py` the way the Python language host does."""

    def program() -> None:
        runpy.run_path(str(path), run_name="__main__")

    return program


@contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    # The CLI runs the program from the project directory; the program finds stage files there.
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_program(
    values: Mapping[str, Any],
    program: Callable[[], None] | None = None,
    *,
    project_dir: Path | str = REPO_ROOT,
    stack: str = DEFAULT_STACK,
    mocks: RecordingMocks | None = None,
) -> RenderedStack:
    """Evaluate the Pulumi program under mocks with these config values; return what it registered.

    `values` are bare config keys (as from `values_for_stage`) or full 'project:key' keys.
    `program` defaults to the repository's `__main__.py`. Exceptions the program raises (for
    instance a refused config) propagate unchanged. Synchronous; not thread-safe (it sets the
    SDK's process-wide settings and the working directory). Pass your own `mocks` to look at
    what was registered even when the program raised.
    """
    project_dir = Path(project_dir).resolve()
    project = project_name(project_dir)
    program = program or program_from_file(REPO_ROOT / PROGRAM_FILE)
    strings, secret_keys = config_strings(values, project)

    mocks = mocks if mocks is not None else RecordingMocks()
    pulumi_settings.reset_options()  # a fresh root Stack, not the previous run's
    pulumi.runtime.set_all_config(strings, secret_keys)
    pulumi.runtime.set_mocks(
        mocks, project=project, stack=stack, preview=False, monitor=RecordingMonitor(mocks)
    )
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    def evaluate() -> pulumi.Output:
        program()
        root = pulumi_settings.get_root_resource()
        exports = getattr(root, "outputs", {}) if root is not None else {}
        return pulumi.Output.from_input(exports).apply(
            lambda values: outputs.update(plain_numbers(values))
        )

    try:
        with _working_directory(project_dir):
            evaluate()
    finally:
        pulumi.runtime.set_all_config({}, [])
    return RenderedStack(
        resources=_by_name(mocks.registrations), outputs=outputs, project=project, stack=stack
    )


def render_stage(
    project_dir: Path | str, stage: str, program: Callable[[], None] | None = None, stack: str = DEFAULT_STACK
) -> RenderedStack:
    """`values_for_stage` + `run_program`: the desired state of one stage."""
    return run_program(values_for_stage(project_dir, stage), program, project_dir=project_dir, stack=stack)


def _by_name(registrations: list[RecordedResource]) -> dict[str, RecordedResource]:
    resources: dict[str, RecordedResource] = {}
    for record in sorted(registrations, key=lambda r: (r.name, r.urn)):
        if record.name in resources:
            other = resources[record.name]
            raise DuplicateResourceName(
                f"two resources are named {record.name!r} ({other.type} and {record.type}); "
                "give every resource a distinct logical name"
            )
        resources[record.name] = record
    return resources
