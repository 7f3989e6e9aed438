"""Reading Pulumi.yaml and the stage files into the model, with errors that name file, key and rule.

The Pulumi CLI merges project-level defaults (Pulumi.yaml `config:`) with the stack's config
file key by key: a key set in the stage file replaces the default whole. `merge_config` does the
same, so the bot, `rollout render` and the tests see exactly what `pulumi up` would.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from pydantic import BaseModel, ValidationError

from rollout.model import (
    ProjectSettings,
    Release,
    StackConfig,
    Stage,
    StageSettings,
    replica_ratio_problem,
    rollback_target_problem,
)

# The checkout this package runs from: Pulumi.yaml, the stage files, __main__.py, alerts/.
REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILE = "Pulumi.yaml"
PROJECT_KEYS = ("stageOrder", "releaseFlags", "services", "routing", "monitoring", "cluster", "releasePolicy", "bot")
STAGE_KEYS = ("stage", "analysis", "gates", "flags")


class ConfigError(ValueError):
    """A config value broke a rule. `str()` names the file, the key path and the rule."""

    def __init__(self, source: str, problems: Iterable[str]):
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: invalid configuration\n{lines}")


def stage_file(project_dir: Path, stage: str) -> Path:
    return Path(project_dir) / f"Pulumi.{stage}.yaml"


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (PyYAML would keep the last silently;
    the Pulumi CLI refuses it too)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice (first on line {seen[key]})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(Path(path).name, [f"cannot read file: {err.strerror}"]) from err
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(Path(path).name, [f"{where}malformed YAML: {problem}"]) from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(Path(path).name, ["top level must be a mapping"])
    return data


def project_name(project_dir: Path) -> str:
    data = read_yaml(Path(project_dir) / PROJECT_FILE)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(PROJECT_FILE, ["name: the project needs a name"])
    return name


def _strip_namespace(key: str, namespace: str, source: str) -> str:
    if ":" not in key:
        return key
    prefix, _, bare = key.partition(":")
    if prefix != namespace:
        raise ConfigError(source, [f"{key}: belongs to '{prefix}', not this project '{namespace}'"])
    return bare


def project_defaults(project_dir: Path) -> dict[str, Any]:
    """Pulumi.yaml `config:` as {bare key: value}; structured values sit under `value:`/`default:`."""
    data = read_yaml(Path(project_dir) / PROJECT_FILE)
    namespace = project_name(project_dir)
    values: dict[str, Any] = {}
    for key, entry in (data.get("config") or {}).items():
        bare = _strip_namespace(str(key), namespace, PROJECT_FILE)
        if isinstance(entry, dict) and ("value" in entry or "default" in entry):
            values[bare] = entry.get("value", entry.get("default"))
        else:
            values[bare] = entry
    return values


def stack_values(path: Path, namespace: str) -> dict[str, Any]:
    """A stack config file's `config:` as {bare key: value}. Secrets would be refused elsewhere."""
    data = read_yaml(path)
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(Path(path).name, ["config: must be a mapping of keys to values"])
    return {_strip_namespace(str(k), namespace, Path(path).name): v for k, v in config.items()}


def merge_config(defaults: Mapping[str, Any], stack: Mapping[str, Any]) -> dict[str, Any]:
    """Key-level override, as the Pulumi CLI does: a stack key replaces the default whole."""
    return {**defaults, **stack}


# key paths that name secrets, and values that look like one: a refusal never repeats them
_SECRET_PATH = re.compile(r"(?i)(password|secret|token|webhook|routing.?key|api.?key|auth|credential|kubeconfig)")
_SECRET_VALUE = re.compile(r"(?i)(://[^/\s:@]+:[^/\s@]+@|hooks\.slack\.com|xox[abp]-|bearer\s|-----BEGIN)")


def _shown(path: str, value: Any) -> str:
    """How a refused value is quoted in an error: not at all when it could be a secret."""
    if isinstance(value, (dict, list)) or value is None:
        return ""
    if _SECRET_PATH.search(path) or (isinstance(value, str) and (_SECRET_VALUE.search(value) or len(value) > 64)):
        return " (value not shown: it may be a secret)"
    return f" (got {value!r})"


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """'; did you mean 'checkInterval'?' when one candidate is close, else ''."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _keys_at(schema: dict[str, Any], loc: list[Any]) -> list[str]:
    """The keys a model accepts at `loc` (a pydantic error location), read from its JSON schema."""
    defs = schema.get("$defs", {})

    def options(node: dict[str, Any]) -> list[dict[str, Any]]:
        if "$ref" in node:
            return options(defs.get(node["$ref"].rsplit("/", 1)[-1], {}))
        union = node.get("anyOf") or node.get("oneOf") or node.get("allOf")
        return [o for n in union for o in options(n)] if union else [node]

    nodes = options(schema)
    for part in loc:
        step = []
        for node in nodes:
            if isinstance(part, int) and isinstance(node.get("items"), dict):
                step += options(node["items"])
            elif part in node.get("properties", {}):
                step += options(node["properties"][part])
            elif isinstance(node.get("additionalProperties"), dict):
                step += options(node["additionalProperties"])
        nodes = step
    return sorted({key for node in nodes for key in node.get("properties", {})})


def _problems(
    err: ValidationError, namespace: str, key_of_root: str | None = None, model: type[BaseModel] | None = None
) -> list[str]:
    problems = []
    schema = model.model_json_schema(by_alias=True) if model else {}
    for item in err.errors():
        loc = list(item["loc"])
        full = list(loc)
        key = str(loc.pop(0)) if loc and key_of_root is None else key_of_root
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
        message = item["msg"].removeprefix("Value error, ")
        shown = _shown(f"{key}{path}", item.get("input"))
        if item["type"] == "extra_forbidden":  # a misspelled key: its value is no news, a near name is
            message, shown = "unknown key" + did_you_mean(str(full[-1]), _keys_at(schema, full[:-1])), ""
        elif "(got " in message:  # the model's own message already quotes the value
            if shown.startswith(" (got "):
                shown = ""
            else:
                message = re.sub(r" \(got .*\)$", "", message)
        if key:
            problems.append(f"{namespace}:{key}{path}: {message}{shown}")
        else:  # a rule across keys: its message starts with the key path it is about
            problems.append(f"{namespace}:{message}{shown}")
    return problems


def parse_stack_config(
    values: Mapping[str, Any], namespace: str, source: str, project_source: str | None = None
) -> StackConfig:
    """Validate merged config values. `source` names the stage file in errors."""
    unknown = sorted(set(values) - set(PROJECT_KEYS) - set(STAGE_KEYS))
    if unknown:
        known = (*PROJECT_KEYS, *STAGE_KEYS)
        raise ConfigError(source, [f"{namespace}:{k}: unknown key{did_you_mean(k, known)}" for k in unknown])
    if "stage" not in values or "flags" not in values:
        missing = [k for k in ("stage", "flags") if k not in values]
        raise ConfigError(source, [f"{namespace}:{k}: required in every stage file" for k in missing])
    try:
        stage = Stage.model_validate({k: values[k] for k in STAGE_KEYS if k in values})
    except ValidationError as err:
        raise ConfigError(source, _problems(err, namespace, model=Stage)) from err
    try:
        project = ProjectSettings.model_validate({k: values[k] for k in PROJECT_KEYS if k in values})
    except ValidationError as err:
        raise ConfigError(project_source or source, _problems(err, namespace, model=ProjectSettings)) from err
    if stage.name not in project.stage_order:
        raise ConfigError(
            source,
            [f"{namespace}:stage.name: unknown stage {stage.name!r}; stageOrder is {project.stage_order}"],
        )
    problem = rollback_target_problem(stage, project.release_flags)
    if problem:
        raise ConfigError(source, [f"{namespace}:flags: {problem}"])
    problem = replica_ratio_problem(project, stage)
    if problem:
        raise ConfigError(source, [f"{namespace}:stage.weight: {problem}"])
    return StackConfig(project=project, stage=stage)


def no_stage_file(project_dir: Path, stage: str) -> ConfigError:
    """The refusal for a stage without a file: a typo gets the stages there are."""
    order = project_defaults(project_dir).get("stageOrder")
    known = f"; the stages are {', '.join(map(str, order))}{did_you_mean(stage, map(str, order))}" if (
        isinstance(order, list) and stage not in order) else ""
    return ConfigError(stage_file(project_dir, stage).name, [f"no stage file for stage {stage!r}{known}"])


def load_stack_config(project_dir: Path, stage: str) -> StackConfig:
    """What `pulumi up --config-file Pulumi.<stage>.yaml` gives the program."""
    project_dir = Path(project_dir)
    namespace = project_name(project_dir)
    path = stage_file(project_dir, stage)
    if not path.exists():
        raise no_stage_file(project_dir, stage)
    stack = stack_values(path, namespace)
    config = parse_stack_config(
        merge_config(project_defaults(project_dir), stack), namespace, path.name, PROJECT_FILE
    )
    if config.stage.name != stage:
        raise ConfigError(
            path.name, [f"{namespace}:stage.name: is {config.stage.name!r} but the file is for {stage!r}"]
        )
    return config


def load_policy_file(project_dir: Path, path: Path) -> StackConfig:
    """Any file in the stage-file schema (stage, analysis, gates, flags) with the project's
    defaults, validated like a stage file: what `rollout replay --policy FILE` judges with."""
    project_dir, path = Path(project_dir), Path(path)
    if not path.is_file():
        raise ConfigError(str(path), ["no such policy file"])
    namespace = project_name(project_dir)
    stack = stack_values(path, namespace)
    return parse_stack_config(merge_config(project_defaults(project_dir), stack), namespace, str(path), PROJECT_FILE)


def load_release(project_dir: Path) -> Release:
    """Every stage file of the stage order, validated one by one and then as a progression."""
    project_dir = Path(project_dir)
    defaults = project_defaults(project_dir)
    namespace = project_name(project_dir)
    try:
        order = ProjectSettings.model_validate(
            {k: defaults[k] for k in PROJECT_KEYS if k in defaults}
        ).stage_order
    except ValidationError as err:
        raise ConfigError(PROJECT_FILE, _problems(err, namespace, model=ProjectSettings)) from err
    configs = [load_stack_config(project_dir, name) for name in order]
    try:
        return Release(project=configs[0].project, stages=[c.stage for c in configs])
    except ValidationError as err:
        raise ConfigError(
            "stage files " + ", ".join(stage_file(project_dir, n).name for n in order),
            _problems(err, namespace, key_of_root="stage.weight"),
        ) from err


def load_release_lenient(project_dir: Path) -> Release:
    """The release as `load_release` gives it; when some stage files are broken (someone's
    half-done edit), the release with a stand-in for each, named in `Release.unavailable` with the
    file's problem, so the bot can still judge the current stage and roll back. A stand-in is
    never promoted into (rollout.release.bot) and never planned from. Strict (ConfigError) when
    Pulumi.yaml or the rollback target's file is broken: then nothing is safe to do."""
    try:
        return load_release(project_dir)
    except ConfigError as strict:
        project_dir = Path(project_dir)
        try:
            order = ProjectSettings.model_validate(
                {k: v for k, v in project_defaults(project_dir).items() if k in PROJECT_KEYS}
            ).stage_order
        except (ValidationError, ConfigError):
            raise strict from None
        configs: dict[str, StackConfig] = {}
        problems: dict[str, str] = {}
        for name in order:
            try:
                configs[name] = load_stack_config(project_dir, name)
            except ConfigError as err:
                problems[name] = str(err)
        if not problems or order[0] in problems:
            raise strict from None
        first = configs[order[0]].stage

        def stand_in(name: str) -> Stage:
            settings = StageSettings.model_construct(name=name, weight=None, description=f"UNAVAILABLE: {problems[name]}")
            return first.model_copy(update={"stage": settings})

        stages = [configs[n].stage if n in configs else stand_in(n) for n in order]
        return Release.model_construct(project=configs[order[0]].project, stages=stages, unavailable=problems)
