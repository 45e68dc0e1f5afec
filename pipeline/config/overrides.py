"""Command-line overrides checked before Hydra runs: one line for each kind of mistake.

Hydra refuses a key that is not in the config, a value of the wrong type (the schema,
`pipeline.config.schema`), a malformed override, a sweep without `-m`, an unknown group option or an
option after the overrides too, but with several lines and a hint about HYDRA_FULL_ERROR; this
module names the problem and its fix in one line (`launch.py` prints it as `error: ...`, exit 2).
It uses Hydra's own override parser, config loader and compose (about 0.1 s) over the search path
the job will have (`Sources`: conf/ or `-cp`, `-cn`, `-cd`, `hydra.searchpath`), so a user's own
config groups are checked as the product's are, and imports neither torch nor MLflow. Anything it
cannot judge is left to Hydra.
"""

from __future__ import annotations

import difflib
import functools
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from pipeline.config import schema

# Hydra's flags that take a value (the next argument is not an override).
VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "-cp", "--config-path", "-cn", "--config-name", "-cd",
               "--config-dir"}  # fmt: skip
# The config flags' long names.
LONG = {"-cp": "--config-path", "-cn": "--config-name", "-cd": "--config-dir"}
# Flags under which the arguments mean something else: left to Hydra.
OTHER_FLAGS = ("-h", "--help", "--hydra-help", "--version", "-i", "--info", "--experimental-rerun", "-sc",
               "--shell-completion")  # fmt: skip
GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"
_ABSENT = object()


def split_argv(argv: list[str]) -> tuple[list[str], list[str]] | str | None:
    """(flags, overrides); a problem line for overrides on both sides of a flag (argparse, under
    Hydra, takes them before or after the options, not both); None to leave all to Hydra."""
    flags: list[str] = []
    overrides: list[str] = []
    expect_value = False
    flag_after = None  # the first flag that came after an override
    between = False  # an override came after it
    for arg in argv:
        if expect_value:
            flags.append(arg)
            expect_value = False
        elif arg.startswith("-"):
            name = arg.partition("=")[0]
            if name in OTHER_FLAGS:
                return None
            if overrides and flag_after is None:
                flag_after = arg
            flags.append(arg)
            expect_value = name in VALUE_FLAGS and "=" not in arg
        else:
            between = between or flag_after is not None
            overrides.append(arg)
    if between:
        return (
            f"option {flag_after} stands between overrides: put options first, e.g. python launch.py "
            f"{' '.join([*flags, *overrides])}"
        )
    return flags, overrides


def parse(args: list[str]) -> list[Override] | str:
    """Hydra's parse of each override, or one line naming the malformed one."""
    parser = OverridesParser.create()
    parsed = []
    for arg in args:
        try:
            parsed += parser.parse_overrides([arg])
        except HydraException as e:
            why = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
            return (
                f"malformed override {arg!r} ({why}): write key=value, a list as key=[a,b], quote "
                f"values with special characters as key='a b' (Hydra's override grammar: {GRAMMAR})"
            )
    return parsed


def _flag_values(flags: list[str]) -> dict[str, str]:
    """The config flags' values by long name (`-cp x`, `--config-path=x`, `--config-path x`)."""
    values: dict[str, str] = {}
    for i, flag in enumerate(flags):
        name, eq, value = flag.partition("=")
        name = LONG.get(name, name)
        if name in LONG.values():
            if eq:
                values[name] = value
            elif i + 1 < len(flags):
                values[name] = flags[i + 1]
    return values


@dataclass(frozen=True)
class Sources:
    """Where Hydra looks for this command line's configs, as `launch.py` would: the primary folder
    (`conf/`, or `-cp/--config-path`, relative to launch.py's folder), the primary config (`config`, or
    `-cn/--config-name`), an added folder (`-cd/--config-dir`), and `hydra.searchpath` (an override,
    else the primary config's), which Hydra's own loader applies."""

    primary: Path
    name: str = "config"
    added: Path | None = None
    searchpath: tuple[str, ...] = ()  # the hydra.searchpath override, as typed

    @classmethod
    def of(cls, flags: list[str], overrides: list[str], conf: Path) -> Sources | str:
        """The sources a command line names (`conf`: launch.py's config folder), or a problem line."""
        values = _flag_values(flags)
        primary = conf
        if (path := values.get("--config-path")) is not None:
            if path.startswith("pkg://"):
                return cls(Path(path), values.get("--config-name", "config"))  # a package: Hydra's to judge
            primary = (conf.parent / path).resolve()
            if not primary.is_dir():
                return f"-cp {path}: no folder {primary} (a relative -cp is relative to {conf.parent})"
        added = None
        if (path := values.get("--config-dir")) is not None:
            added = Path(path).absolute()
            if not added.is_dir():
                return f"-cd {path}: no folder {added}: give the folder that holds your config groups"
        searchpath = tuple(o for o in overrides if o.lstrip("+~").startswith("hydra.searchpath="))
        return cls(primary, values.get("--config-name", "config"), added, searchpath)

    @functools.cached_property
    def loader(self):
        """Hydra's config loader over these folders (Hydra's internals, as `hydra.main` builds it)."""
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
        from hydra._internal.utils import create_config_search_path
        from hydra.core.config_search_path import SearchPathQuery

        path = create_config_search_path(str(self.primary))
        if self.added is not None:
            path.prepend("command-line", f"file://{self.added}", anchor=SearchPathQuery(provider="schema"))
        return ConfigLoaderImpl(config_search_path=path)

    def folders(self) -> str:
        """The search path's config folders, for a message."""
        paths = [p.path for p in self.loader.get_sources() if p.provider not in ("hydra", "schema")]
        return ", ".join(dict.fromkeys(p for p in paths if p))

    def searchpath_problem(self) -> str | None:
        """A `hydra.searchpath` entry (the override's, else the primary config's) Hydra cannot read:
        Hydra only warns and goes on without it, so its groups' options would be 'unknown'."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                self.options("model")
            except Exception:  # an unreadable primary config or a malformed search path: Hydra says
                return None
        for w in caught:
            text = str(w.message)
            if "is not available" in text and "searchpath" in text:
                path = text.partition("path=")[2].removesuffix(" is not available.")
                where = "in the command line" if self.searchpath else f"in the primary config {self.name}"
                return (
                    f"hydra.searchpath {where}: {path} is not available (no such folder): write "
                    "file:///absolute/path/to/conf, or file://relative/to/the/current/folder"
                )
        return None

    def options(self, group: str) -> list[str]:
        """The options of a config group in every folder of the search path (plugins' included)."""
        return list(self._group_options(group, configs_only=True))

    def is_group(self, key: str) -> bool:
        """A config group (`model=conv`, `hydra/launcher=slurm`), not a value (`model.hidden=[8]`:
        a dotted key is a value, since a group's name has no dot)."""
        if "/" in key:
            return True
        return "." not in key and bool(self._group_options(key, configs_only=False))

    @functools.cache  # noqa: B019  (a few keys per command line, one Sources)
    def _group_options(self, group: str, configs_only: bool) -> tuple[str, ...]:
        # Each look-up reads the primary config and walks the search path (about 30 ms).
        from hydra.core.object_type import ObjectType

        kind = ObjectType.CONFIG if configs_only else None
        return tuple(self.loader.get_group_options(group, kind, self.name, list(self.searchpath)))

    def compose(self, overrides: list[str], multirun: bool):
        """The config Hydra composes for `overrides` (the hydra node included, unresolved)."""
        from hydra.core.utils import setup_globals
        from hydra.types import RunMode

        setup_globals()  # Hydra's resolvers (${now:...} in the output folders), as hydra.main registers them
        mode = RunMode.MULTIRUN if multirun else RunMode.RUN
        overrides = [*self.searchpath, *overrides]
        return self.loader.load_configuration(self.name, overrides, mode, from_shell=False)


def _prefix(o: Override) -> str:
    return {OverrideType.ADD: "+", OverrideType.FORCE_ADD: "++", OverrideType.DEL: "~"}.get(o.type, "")


def group_variants(groups: list[Override]) -> Iterator[list[str]]:
    """Group overrides to compose: every sweep at its first option, then each other option of each
    sweep once (the keys a value override may name depend on the chosen groups)."""
    options = [
        [f"{_prefix(o)}{o.key_or_group}={v}" for v in o.sweep_string_iterator()]
        if o.is_sweep_override()
        else [o.input_line]
        for o in groups
    ]
    first = [opts[0] for opts in options]
    yield first
    for i, opts in enumerate(options):
        for other in opts[1:]:
            yield [*first[:i], other, *first[i + 1 :]]


def _keys(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield f"{prefix}{k}"
            yield from _keys(v, f"{prefix}{k}.")


def _lookup(tree: Any, key: str) -> Any:
    node = tree
    for part in key.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _ABSENT
    return node


def _example(o: Override) -> str:
    return o.input_line.lstrip("+~").partition("=")[2] or "<value>"


def unknown_key(key: str, o: Override, tree: Mapping) -> str:
    """The line for an override of a key the config does not have, with the closest existing key."""
    keys = [k for k in _keys(tree) if k.startswith("hydra.") == key.startswith("hydra.")]
    # The closest by spelling (llc.drawz -> llc.num_draws), else one it extends (lr_typo -> lr).
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6) or sorted(
        (k for k in keys if key.startswith(k) and k.count(".") == key.count(".")), key=len, reverse=True
    )
    value = _example(o)
    if close:
        return (
            f"unknown key '{key}' (did you mean '{close[0]}'?): write {close[0]}={value}, "
            f"or +{key}={value} to add a new key"
        )
    return f"unknown key '{key}': see the keys with python launch.py --cfg job, or add it with +{key}={value}"


def _values(o: Override) -> list[Any]:
    return list(o.sweep_iterator()) if o.is_sweep_override() else [o.value()]


def _typed_text(o: Override, value: Any) -> str:
    """How the user typed `value` of override `o` (a sweep's element as the parser read it)."""
    if not o.is_sweep_override():
        return _example(o)
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def type_problem(o: Override, cfg: DictConfig, examples: Mapping[str, str]) -> str | None:
    """The line for a value (each value of a sweep) the schema's type refuses: what Hydra would
    refuse when it composes, said the way a user fixes it."""
    key = o.key_or_group
    leaf = schema.typed_leaf(cfg, key)
    if leaf is None or o.type == OverrideType.DEL:
        return None
    for value in _values(o):
        if schema.refuses(leaf, value):
            null = " or null" if leaf._is_optional() else ""
            example = examples.get(key) or _default_text(OmegaConf.select(cfg, key, throw_on_missing=False))
            kind = leaf.kind
            return f"{key}={_typed_text(o, value)} is not {kind}{null}: e.g. {key}={example}"
    return None


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "<value>" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def check_values(values: list[Override], tree: dict) -> str | None:
    """Overrides of values against the composed config, in order (an added key exists after)."""
    for o in values:
        key = o.key_or_group
        if o.package is not None:  # `key@package=...`: left to Hydra
            continue
        found = _lookup(tree, key) is not _ABSENT
        if o.type == OverrideType.CHANGE and not found:
            return unknown_key(key, o, tree)
        if o.type == OverrideType.ADD and found:
            value = _example(o)
            return f"key '{key}' exists already: write {key}={value} to change it (or ++{key}={value})"
        if o.type == OverrideType.DEL and not found:
            return f"cannot delete '{key}': the config has no such key (see python launch.py --cfg job)"
        if o.type in (OverrideType.ADD, OverrideType.FORCE_ADD) and not found:
            parent, _, last = key.rpartition(".")
            node = _lookup(tree, parent) if parent else tree
            if isinstance(node, dict):
                node[last] = None
    return None


def compose_problem(
    sources: Sources, groups: list[str], values: list[Override], multirun: bool
) -> tuple[str | None, Any]:
    """Compose with the group overrides; (problem line or None, the composed config or None)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an unavailable search path: `searchpath_problem`
            cfg = sources.compose(groups, multirun)
    except (ConfigCompositionException, MissingConfigException) as e:  # Hydra would fail the same
        if isinstance(e.__cause__, ValidationError):  # a group option's value the schema refuses
            first = str(e.__cause__).splitlines()[0]
            return (
                f"{first} (at {e.__cause__.full_key}, composing {' '.join(groups) or 'the defaults'})",
                None,
            )
        message = " ".join(str(e).split())
        if "No match in the defaults list" in message:
            line = next((g for g in groups if f"'{g.split('=')[0]}'" in message), None)
            if line:
                return f"{line} is not in the defaults list: add it with +{line}", None
        if message.startswith("Multiple values for"):
            line = next((g for g in groups if g.startswith("+") and g[1:].split("=")[0] in message), None)
            if line:
                return f"{line} adds a group the defaults list has: write {line[1:]} to choose it", None
        if message.startswith("Cannot find primary config"):
            return (
                f"no primary config '{sources.name}' (-cn) in {sources.folders()}: name a .yaml file "
                "of one of them, without .yaml",
                None,
            )
        return message, None
    except Exception:  # not ours to judge: Hydra reports it
        return None, None
    tree = OmegaConf.to_container(cfg, resolve=False)
    problem = check_values(values, tree)
    if problem is None:
        examples = schema.examples()
        problem = next((p for o in values if (p := type_problem(o, cfg, examples))), None)
    return problem, cfg


def output_problem(cfg: Any, values: list[Override], multirun: bool) -> str | None:
    """Hydra's output folder (`hydra.run.dir`, or `hydra.sweep.dir` for -m) must be creatable: one
    line instead of Hydra's traceback. Tried with a nameless temporary file, as permissions and
    read-only mounts are only known by writing (root passes os.access on a read-only mount)."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        for o in values:
            if o.key_or_group == key and not o.is_sweep_override():
                OmegaConf.update(cfg, key, o.value(), force_add=True)
        folder = Path(str(OmegaConf.select(cfg, key)))
    except Exception:  # an interpolation only Hydra can resolve (${hydra:...}): its own check
        return None
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        why = e.strerror or type(e).__name__
        return (
            f"cannot write Hydra's output folder {folder} ({existing}: {why}): run from a writable "
            f"folder or set {key}=<writable folder>"
        )
    return None


def unknown_group_option(args: list[str], sources: Sources) -> str | None:
    """One line for `group=name` overrides (sweeps included) naming a config that does not exist in
    any folder of the search path.

    Hydra refuses them too, with a multi-line report; this names the choices in one line first.
    """
    for arg in args:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep or "." in key or any(c in value for c in "()[]*") or not sources.is_group(key):
            continue
        choices = sources.options(key)
        for name in value.split(","):
            if name and name not in choices:
                return f"unknown {key} '{name}': choose from {', '.join(choices)}"
    return None


def problem(argv: list[str], conf: Path) -> str | None:
    """The one line for the first mistake in the command line (`conf`: launch.py's config folder,
    extended by -cp, -cn, -cd and hydra.searchpath as Hydra extends it), or None when Hydra may go
    on: an unknown group option or key, a value of the wrong type, a malformed override, a search
    path folder that does not exist, an output folder Hydra cannot write."""
    split = split_argv(argv)
    if split is None or isinstance(split, str):
        return split
    flags, args = split
    sources = Sources.of(flags, args, conf)
    if isinstance(sources, str):
        return sources
    if str(sources.primary).startswith("pkg:"):  # configs in a package: Hydra's to judge
        return None
    parsed = parse(args)
    if isinstance(parsed, str):
        return parsed
    if line := sources.searchpath_problem():
        return line
    if line := unknown_group_option(args, sources):
        return line
    multirun = "-m" in flags or "--multirun" in flags
    if not multirun:
        for o in parsed:
            if o.is_sweep_override():
                v = _example(o)
                return f"{o.input_line} is a sweep: add -m to run one job per value, or write a list as [{v}]"
    searchpath = [o for o in parsed if o.key_or_group == "hydra.searchpath"]
    groups = [o for o in parsed if o not in searchpath and sources.is_group(o.key_or_group)]
    values = [o for o in parsed if o not in groups]
    cfg = None
    for variant in group_variants(groups):
        line, composed = compose_problem(sources, variant, values, multirun)
        if line:
            return line
        cfg = cfg if cfg is not None else composed
    if cfg is None:
        return None
    return output_problem(cfg, values, multirun)
