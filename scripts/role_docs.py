#!/usr/bin/env python3
"""Role docs: check each role's defaults/ against its meta/argument_specs.yml,
and generate roles/<role>/README.md from them.

    scripts/role_docs.py            write every roles/<role>/README.md
    scripts/role_docs.py --check    exit 1 when defaults and specs disagree, a tag
                                    is undocumented or a README is not what this
                                    script writes (for CI; writes nothing)

Each README is generated from meta/argument_specs.yml (what the role does,
every option, every entry point), meta/main.yml (description, platforms),
defaults/ (the values of templated defaults, shown as their expression), the
role's tasks (their `tags:`), the stack's playbooks (site.yml: the tags and
the hosts they apply the role with) and README.md's Tags table (what a tag
runs). Edit those, never the READMEs, and rerun this script.

The rules of the check are in check_role(), check_shared() and check_tags().
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

# The collection the roles are published in: prometheus_alerting.stack.<role>.
COLLECTION = "prometheus_alerting.stack"

# Inventory variables every role reads (README "Security"): they are set once
# in inventory, never in a role's defaults, and each role that reads one
# documents it in its `main` entry point with a description that starts with
# "Shared". Listed here, not guessed from the descriptions: the check fails
# when the two disagree.
SHARED_INVENTORY_VARIABLES = (
    "monitoring_tls_cert",
    "monitoring_tls_key",
    "monitoring_tls_ca",
    "monitoring_web_users",
    "monitoring_web_client_user",
)
SHARED_PREFIX = "Shared"

# The entry points whose options are a role's contract with its users: every
# variable of defaults/ must be an option of one of them. `main` for every
# role that is applied on its own. monitoring_service is never applied on its
# own (it has no tasks/main.yml): its `main` documents the settings meant for
# inventory, and the other roles import its `install`, `unit` and
# `python_bundle` task files with per-call variables, whose defaults are in
# its defaults/ too.
CONTRACT_ENTRY_POINTS = {"monitoring_service": ("main", "install", "unit", "python_bundle")}

# Literal defaults that are data too large to repeat in the spec: the alert
# catalog, one rule group per variable, each kept in the defaults file named
# here. The spec gives no `default` for them and its description names the
# file (by its name only: see _value_problems). Every other literal default
# is repeated in the spec, equal.
CATALOG_DEFAULTS = {
    "prometheus": {
        "prometheus_alerts_trading_bot": "defaults/main/alerts_trading_bot.yml",
        "prometheus_alerts_data_consumer": "defaults/main/alerts_trading_bot.yml",
        "prometheus_alerts_system": "defaults/main/alerts_system.yml",
        "prometheus_alerts_docker": "defaults/main/alerts_docker.yml",
        "prometheus_alerts_dragonflydb": "defaults/main/alerts_dragonflydb.yml",
        "prometheus_alerts_postgres": "defaults/main/alerts_postgres.yml",
        "prometheus_alerts_monitoring": "defaults/main/alerts_monitoring.yml",
        "prometheus_alerts_probes": "defaults/main/alerts_probes.yml",
    },
}

# Examples of the entry points that the stack's playbooks do not apply as a
# role: how another role or playbook calls them. The generator fails when one
# does not name every required option of its entry point.
EXAMPLES = {
    ("alertmanager", "render"): """\
- name: Render Alertmanager's configuration for review, touching no host
  hosts: monitoring
  gather_facts: false
  tasks:
    - name: Write <render_dir>/<host>/alertmanager/ on the controller
      ansible.builtin.include_role:
        name: prometheus_alerting.stack.alertmanager
        tasks_from: render
      vars:
        render_dir: "{{ playbook_dir }}/build/rendered"
""",
    ("monitoring_service", "install"): """\
# In a role of your own (its tasks/install.yml):
- name: Install my_exporter and its user
  ansible.builtin.import_role:
    name: prometheus_alerting.stack.monitoring_service
    tasks_from: install
  vars:
    monitoring_service_name: my-exporter
    monitoring_service_packages: [my-exporter]
    monitoring_service_user: my-exporter
""",
    ("monitoring_service", "unit"): """\
# In a role of your own (its tasks/service.yml):
- name: Run my_exporter under its own hardened unit
  ansible.builtin.import_role:
    name: prometheus_alerting.stack.monitoring_service
    tasks_from: unit
  vars:
    monitoring_service_name: my-exporter
    monitoring_service_description: My exporter
    monitoring_service_user: my-exporter
    monitoring_service_exec_start: [/usr/bin/my-exporter, --web.listen-address=127.0.0.1:9999]
    monitoring_service_hardening:
      ProtectHome: read-only
""",
    ("monitoring_service", "python_bundle"): """\
# In a role of your own (its tasks/install.yml), when the host facts do not
# show the version complete:
- name: Install this version of my Python service
  ansible.builtin.include_role:
    name: prometheus_alerting.stack.monitoring_service
    tasks_from: python_bundle
  vars:
    monitoring_service_name: my-service
    monitoring_service_python_projects: ["{{ playbook_dir }}/my_service"]
    monitoring_service_python_lock: "{{ playbook_dir }}/my_service/requirements.lock"
    monitoring_service_python_command: my-service
    monitoring_service_python_bundle: ~/.cache/my-service/my-service-1.0-py3.11-x86_64.tar.gz
    monitoring_service_python_version_dir: /opt/prometheus-alerting/my-service/1.0-py3.11
""",
}

GENERATED_MARKER = (
    "<!-- Generated by scripts/role_docs.py from meta/argument_specs.yml, meta/main.yml,\n"
    "     defaults/ and the tasks' tags. Do not edit: edit those, then run\n"
    "     scripts/role_docs.py (CI runs it with --check). -->"
)

# Ansible's argument spec types, and the Python types a literal default of
# each may have. A float option may take an integer (Ansible converts it);
# bool is never an int here although Python says it is.
TYPES = {
    "str": (str,),
    "path": (str,),
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
    "raw": (object,),
}


# --- Loading ----------------------------------------------------------------


class Unsafe(str):
    """A string tagged !unsafe: Ansible never templates it."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader (YAML 1.1, as Ansible) that knows Ansible's tags."""


def _construct_unsafe(loader, node):
    if isinstance(node, yaml.ScalarNode):
        return Unsafe(loader.construct_scalar(node))
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor("!unsafe", _construct_unsafe)
_Loader.add_constructor("!vault", lambda loader, node: Unsafe(loader.construct_scalar(node)))


def load_yaml(path):
    with open(path, encoding="utf-8") as stream:
        return yaml.load(stream, Loader=_Loader)


class _Dumper(yaml.SafeDumper):
    """Block YAML with indented sequences, as the repository writes it."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


_Dumper.add_representer(Unsafe, lambda dumper, data: dumper.represent_str(str(data)))


@dataclass
class Role:
    name: str
    path: Path
    defaults: dict = field(default_factory=dict)
    # Variable -> the defaults file (relative to the role) that sets it.
    defaults_files: dict = field(default_factory=dict)
    # Variable -> its text in that file, as written (expressions, comments).
    defaults_text: dict = field(default_factory=dict)
    specs: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)

    def options(self, entry_point):
        return (self.specs.get(entry_point) or {}).get("options") or {}

    @property
    def contract(self):
        return CONTRACT_ENTRY_POINTS.get(self.name, ("main",))


def defaults_files(role_path):
    """The files Ansible loads as the role's defaults, in its order."""
    base = role_path / "defaults"
    for name in ("main.yml", "main.yaml"):
        if (base / name).is_file():
            return [base / name]
    directory = base / "main"
    if directory.is_dir():
        return sorted(
            p for p in directory.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file()
        )
    return []


def source_texts(path):
    """Top-level key -> its lines in a YAML file, as written, without trailing comments."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    node = yaml.compose(text, Loader=_Loader)
    found = {}
    if not isinstance(node, yaml.MappingNode):
        return found
    for key, value in node.value:
        end = value.end_mark.line if value.end_mark.column else value.end_mark.line - 1
        chunk = lines[key.start_mark.line : end + 1]
        while chunk and (not chunk[-1].strip() or chunk[-1].startswith("#")):
            chunk.pop()
        found[key.value] = "\n".join(chunk) + "\n"
    return found


def load_role(path):
    role = Role(name=path.name, path=path)
    for file in defaults_files(path):
        relative = file.relative_to(path).as_posix()
        for name, value in (load_yaml(file) or {}).items():
            if name in role.defaults_files:
                role.problems.append(
                    f"{role.name}: `{name}` is set in both {role.defaults_files[name]} "
                    f"and {relative}; Ansible keeps the value of {relative} only"
                )
            role.defaults[name] = value
            role.defaults_files[name] = relative
        role.defaults_text.update(source_texts(file))
    spec_file = path / "meta" / "argument_specs.yml"
    if spec_file.is_file():
        role.specs = (load_yaml(spec_file) or {}).get("argument_specs") or {}
    else:
        role.problems.append(f"{role.name}: meta/argument_specs.yml is missing")
    meta_file = path / "meta" / "main.yml"
    if meta_file.is_file():
        role.meta = load_yaml(meta_file) or {}
    return role


def load_roles(root=ROOT):
    return [
        load_role(path) for path in sorted((root / "roles").iterdir()) if (path / "meta").is_dir()
    ]


# --- Values -----------------------------------------------------------------


def is_templated(value):
    """Whether Ansible templates the value (or something in it)."""
    if isinstance(value, Unsafe):
        return False
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(is_templated(v) for v in value.values())
    if isinstance(value, list):
        return any(is_templated(v) for v in value)
    return False


def same(a, b):
    """Equal, and of the same types all the way down (1 is not true, "0" is not 0)."""
    if isinstance(a, str) and isinstance(b, str):
        return str(a) == str(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def show(value, limit=120):
    """A value in a message: JSON, shortened."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def description_text(option):
    description = option.get("description") or ""
    if isinstance(description, list):
        return " ".join(str(part) for part in description)
    return str(description)


def type_problems(value, option, where):
    """Why a literal value does not fit an option's spec (type, elements, choices, sub-options)."""
    if value is None or (isinstance(value, str) and is_templated(value)):
        # Unset, or decided when Ansible renders it.
        return []
    kind = option.get("type", "str")
    if kind not in TYPES:
        return [f"{where}: the spec's type `{kind}` is not one this check knows"]
    allowed = TYPES[kind]
    if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
        return [
            f"{where}: {show(value)} is a {type(value).__name__}, not of the spec's type `{kind}`"
        ]
    problems = []
    if "choices" in option and value not in option["choices"]:
        problems.append(
            f"{where}: {show(value)} is not one of the spec's choices {show(option['choices'])}"
        )
    if kind == "list":
        element = {k: v for k, v in option.items() if k in ("options",)}
        element["type"] = option.get("elements", "raw")
        for index, item in enumerate(value):
            problems += type_problems(item, element, f"{where}[{index}]")
    elif kind == "dict" and option.get("options"):
        problems += suboption_problems(value, option["options"], where)
    return problems


def suboption_problems(value, options, where):
    problems = []
    for key in value:
        if key not in options:
            problems.append(
                f"{where}: key `{key}` is no sub-option of the spec ({', '.join(options)})"
            )
    for key, sub in options.items():
        if sub.get("required") and key not in value:
            problems.append(f"{where}: the required sub-option `{key}` is missing")
        if key in value:
            problems += type_problems(value[key], sub, f"{where}.{key}")
    return problems


# --- The check --------------------------------------------------------------


def check_role(role):
    """Where a role's defaults/ and its meta/argument_specs.yml disagree.

    1. Every variable of defaults/ is an option of a contract entry point
       (CONTRACT_ENTRY_POINTS; `main` unless said there).
    2. Every option of `main` has a value in defaults/, unless it is required
       or a shared inventory variable; and every option of any entry point
       that gives a `default` has it in defaults/ too: Ansible validates
       against the spec but never applies its defaults.
    3. Where both have it, in every entry point that lists it:
       - a templated value (with `{{`): the spec gives no `default`, and the
         description says what the value derives from (the word "default");
       - a catalog value (CATALOG_DEFAULTS): no `default`, the description
         names its file;
       - any other value: the spec's `default` is equal, of the same types;
       - the value has the spec's type (and elements, choices, sub-options).
    4. Shared inventory variables (SHARED_INVENTORY_VARIABLES) are never in
       defaults/.
    """
    problems = list(role.problems)
    entry_points = list(role.specs)
    for entry_point in role.contract:
        if entry_point not in role.specs:
            problems.append(
                f"{role.name}: meta/argument_specs.yml has no entry point `{entry_point}`"
            )
    contract = " or ".join(f"`{e}`" for e in role.contract)
    catalog = CATALOG_DEFAULTS.get(role.name, {})

    for name, value in role.defaults.items():
        source = role.defaults_files[name]
        if name in SHARED_INVENTORY_VARIABLES:
            problems.append(
                f"{role.name}: `{name}` is a shared inventory variable "
                f"(SHARED_INVENTORY_VARIABLES), set in inventory, but {source} sets it to "
                f"{show(value)}"
            )
            continue
        listed_in = [e for e in entry_points if name in role.options(e)]
        if not any(e in role.contract for e in listed_in):
            problems.append(
                f"{role.name}: `{name}` is set in {source} (to {show(value)}) but is no option of "
                f"entry point {contract} in meta/argument_specs.yml"
                + (f" (only of {', '.join(f'`{e}`' for e in listed_in)})" if listed_in else "")
            )
        # Entry points that share one spec of the variable (a YAML anchor) are one report.
        groups = {}
        for entry_point in listed_in:
            option = role.options(entry_point)[name]
            key = json.dumps(option, sort_keys=True, default=str)
            groups.setdefault(key, []).append(entry_point)
        for group in groups.values():
            problems += _value_problems(role, group, name, value, source, catalog)

    for entry_point in entry_points:
        for name, option in role.options(entry_point).items():
            if (
                name in role.defaults
                or name in SHARED_INVENTORY_VARIABLES
                or option.get("required")
            ):
                continue
            if "default" in option:
                problems.append(
                    f"{role.name}: entry point `{entry_point}` gives `{name}` the default "
                    f"{show(option['default'])} but defaults/ does not set it (defaults/ value: "
                    "none); Ansible never applies a spec's default"
                )
            elif entry_point == "main":
                problems.append(
                    f"{role.name}: `{name}` is an option of entry point `main` (spec default: "
                    "none) but defaults/ does not set it (defaults/ value: none)"
                )
    return problems


def _value_problems(role, entry_points, name, value, source, catalog):
    option = role.options(entry_points[0])[name]
    label = "entry point" if len(entry_points) == 1 else "entry points"
    where = f"{role.name}: `{name}` ({label} {', '.join(f'`{e}`' for e in entry_points)})"
    problems = []
    if name in catalog:
        if "default" in option:
            problems.append(
                f"{where}: the spec's default {show(option['default'])} repeats catalog data that "
                f"lives in {catalog[name]} only; remove it"
            )
        # Its file name only: ansible-lint lints a path it finds in a role's YAML even
        # where .ansible-lint excludes it, and the catalog's Prometheus templates are no Jinja.
        if Path(catalog[name]).name not in description_text(option):
            problems.append(
                f"{where}: the description must name {Path(catalog[name]).name} "
                f"({catalog[name]}), where its value is"
            )
    elif is_templated(value):
        if "default" in option:
            problems.append(
                f"{where}: {source} has the templated value {show(value)}, so the spec must "
                f"give no default, but it gives {show(option['default'])}"
            )
        if "default" not in description_text(option).lower():
            problems.append(
                f"{where}: {source} has the templated value {show(value)}; the description "
                "must say what it derives from (mention its default)"
            )
    elif "default" not in option:
        problems.append(f"{where}: the spec gives no default but {source} has {show(value)}")
    elif not same(option["default"], value):
        problems.append(
            f"{where}: the spec's default is {show(option['default'])} "
            f"but {source} has {show(value)}"
        )
    problems += [f"{p} (value of {source})" for p in type_problems(value, option, where)]
    if "default" in option:
        problems += [
            f"{p} (the spec's default)" for p in type_problems(option["default"], option, where)
        ]
    return problems


def shared_options(role):
    """(entry point, name, option) of every shared inventory variable the specs list."""
    return [
        (entry_point, name, option)
        for entry_point in role.specs
        for name, option in role.options(entry_point).items()
        if name in SHARED_INVENTORY_VARIABLES or description_text(option).startswith(SHARED_PREFIX)
    ]


def role_text(role):
    """The role's own code: what its tasks, vars, templates and handlers say."""
    parts = []
    for directory in ("tasks", "vars", "templates", "handlers"):
        base = role.path / directory
        if base.is_dir():
            parts += [p.read_text(encoding="utf-8") for p in sorted(base.rglob("*")) if p.is_file()]
    return "\n".join(parts)


def check_shared(roles):
    """The shared inventory variables, across roles.

    - A spec option whose description starts with "Shared" is in
      SHARED_INVENTORY_VARIABLES, and the description of every listed one
      starts with "Shared".
    - A role whose tasks, vars, templates or handlers read a shared variable
      lists it in `main`, and lists none it does not read.
    - Every role documents a shared variable alike (type, default, no_log,
      description).
    """
    problems = []
    seen = {}
    for role in roles:
        for entry_point, name, option in shared_options(role):
            where = f"{role.name}: `{name}` (entry point `{entry_point}`)"
            described = description_text(option).startswith(SHARED_PREFIX)
            if name not in SHARED_INVENTORY_VARIABLES:
                problems.append(
                    f"{where}: described as {SHARED_PREFIX!r} but not in "
                    "SHARED_INVENTORY_VARIABLES (scripts/role_docs.py): add it there or reword "
                    "the description"
                )
                continue
            if not described:
                problems.append(
                    f"{where}: a shared inventory variable whose description does not start "
                    f"with {SHARED_PREFIX!r}"
                )
            summary = {k: option.get(k) for k in ("type", "elements", "default", "no_log")}
            summary["description"] = description_text(option)
            if name in seen and seen[name][1] != summary:
                problems.append(
                    f"`{name}`: {seen[name][0]} documents it as {show(seen[name][1], 400)} but "
                    f"{role.name} as {show(summary, 400)}"
                )
            seen.setdefault(name, (role.name, summary))
        if "main" not in role.specs or not (role.path / "tasks" / "main.yml").is_file():
            continue
        text = role_text(role)
        for name in SHARED_INVENTORY_VARIABLES:
            used = re.search(rf"\b{name}\b", text) is not None
            listed = name in role.options("main")
            if used and not listed:
                problems.append(
                    f"{role.name}: its code reads the shared `{name}` but entry point `main` "
                    "does not list it"
                )
            elif listed and not used:
                problems.append(
                    f"{role.name}: entry point `main` lists the shared `{name}`, which its code "
                    "never reads"
                )
    return problems


# --- Tags -------------------------------------------------------------------

_IMPORT_TASKS = ("import_tasks", "include_tasks")
_IMPORT_ROLE = ("import_role", "include_role")


def _module(task, names):
    for key in task:
        if key.split(".")[-1] in names and key.count(".") in (0, 2):
            return key.split(".")[-1], task[key]
    return None, None


def _as_list(value):
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def short_role_name(name):
    return name.removeprefix(COLLECTION + ".")


@dataclass
class TaskTags:
    # Tag -> names of the tasks that set it (their own `tags:`), in order.
    tags: dict = field(default_factory=dict)
    # (role, tasks_from, tags the import runs under, importing file).
    role_imports: list = field(default_factory=list)


def walk_tasks(file, inherited, result, seen=None):
    """Collect the tags of a task file and of the files it imports."""
    seen = seen or set()
    if file in seen or not file.is_file():
        return
    seen = seen | {file}
    _walk(load_yaml(file) or [], file, inherited, result, seen)


def _walk(tasks, file, inherited, result, seen):
    for task in tasks:
        if not isinstance(task, dict):
            continue
        own = [t for t in _as_list(task.get("tags")) if t not in ("always", "never")]
        tags = inherited + [t for t in own if t not in inherited]
        name = task.get("name") or ""
        for tag in own:
            result.tags.setdefault(tag, [])
            if name and name not in result.tags[tag]:
                result.tags[tag].append(name)
        for section in ("block", "rescue", "always"):
            if isinstance(task.get(section), list):
                _walk(task[section], file, tags, result, seen)
        module, args = _module(task, _IMPORT_TASKS)
        if module:
            target = args.get("file") if isinstance(args, dict) else args
            applied = (
                _as_list((args.get("apply") or {}).get("tags")) if isinstance(args, dict) else []
            )
            # import_tasks passes its tags on; include_tasks only its `apply`.
            passed = tags if module == "import_tasks" else inherited
            passed = passed + [
                t for t in applied if t not in ("always", "never") and t not in passed
            ]
            if isinstance(target, str) and "{{" not in target:
                walk_tasks(file.parent / target, passed, result, seen)
        module, args = _module(task, _IMPORT_ROLE)
        if module and isinstance(args, dict) and args.get("name"):
            result.role_imports.append(
                (short_role_name(args["name"]), args.get("tasks_from", "main"), tags, file)
            )


def role_task_tags(role):
    result = TaskTags()
    walk_tasks(role.path / "tasks" / "main.yml", [], result)
    return result


@dataclass
class PlaybookUse:
    playbook: str
    play: dict
    play_tags: list
    role_tags: list


def playbook_uses(root=ROOT, playbook="site.yml"):
    """Role -> how the stack's playbooks apply it (site.yml and what it imports)."""
    uses = {}
    _playbook_uses(root, root / playbook, uses, set())
    return uses


def _playbook_uses(root, path, uses, seen):
    if path in seen or not path.is_file():
        return
    seen.add(path)
    for play in load_yaml(path) or []:
        module, target = _module(play, ("import_playbook",))
        if module:
            _playbook_uses(root, path.parent / target, uses, seen)
            continue
        play_tags = [t for t in _as_list(play.get("tags")) if t not in ("always", "never")]
        for entry in play.get("roles") or []:
            name = entry if isinstance(entry, str) else entry.get("role") or entry.get("name")
            tags = [] if isinstance(entry, str) else _as_list(entry.get("tags"))
            uses.setdefault(short_role_name(name), []).append(
                PlaybookUse(path.relative_to(root).as_posix(), play, play_tags, tags)
            )


def readme_tags(root=ROOT):
    """README.md's Tags table: [(tags or patterns with <role>, what they run)]."""
    readme = root / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    match = re.search(r"^## Tags\n(.*?)(?=^## )", text, re.S | re.M)
    rows = []
    for line in (match.group(1) if match else "").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or set(cells[0]) <= set("-: ") or cells[0] == "Tag":
            continue
        rows.append((re.findall(r"`([^`]+)`", cells[0]), cells[1]))
    return rows


def tag_meaning(tag, role_name, rows):
    for patterns, runs in rows:
        if any(p.replace("<role>", role_name) == tag for p in patterns):
            return runs
    return None


def check_tags(roles, rows=None, uses=None):
    """Every tag that a role's tasks set or the stack's playbooks give it is in README.md's
    Tags table."""
    rows = readme_tags() if rows is None else rows
    uses = playbook_uses() if uses is None else uses
    problems = []
    for role in roles:
        tags = list(role_task_tags(role).tags)
        for use in uses.get(role.name, []):
            tags += use.play_tags + use.role_tags
        for tag in dict.fromkeys(tags):
            if tag_meaning(tag, role.name, rows) is None:
                problems.append(f"{role.name}: tag `{tag}` is not in README.md's Tags table")
    return problems


# --- Markdown ---------------------------------------------------------------

_MARKUP = re.compile(
    r"\b(?:(?P<code>[COVEMP])\((?P<code_text>[^)]*)\)"
    r"|I\((?P<italic>[^)]*)\)"
    r"|B\((?P<bold>[^)]*)\)"
    r"|U\((?P<url>[^)]*)\)"
    r"|L\((?P<link_text>[^,)]*),\s*(?P<link_url>[^)]*)\)"
    r"|R\((?P<ref_text>[^,)]*),\s*(?P<ref>[^)]*)\))"
    r"|\bHORIZONTALLINE\b"
)


def code(text, table=False):
    """A Markdown code span."""
    text = str(text)
    if table:
        text = text.replace("|", "\\|")
    if "`" in text:
        return f"`` {text} ``"
    return f"`{text}`"


def escape(text, table=False):
    """Plain text for Markdown: no accidental emphasis, HTML or cell breaks."""
    text = text.replace("\\", "\\\\").replace("*", "\\*").replace("`", "\\`").replace("<", "&lt;")
    return text.replace("|", "\\|") if table else text


def markup(text, table=False):
    """Ansible's documentation markup as Markdown: C(x) I(x) O(x) U(x) L(t,u) ..."""
    out = []
    position = 0
    for match in _MARKUP.finditer(text):
        out.append(escape(text[position : match.start()], table))
        position = match.end()
        if match.group("code") is not None:
            out.append(code(match.group("code_text"), table))
        elif match.group("italic") is not None:
            out.append(f"*{escape(match.group('italic'), table)}*")
        elif match.group("bold") is not None:
            out.append(f"**{escape(match.group('bold'), table)}**")
        elif match.group("url") is not None:
            out.append(f"<{match.group('url')}>")
        elif match.group("link_text") is not None:
            out.append(
                f"[{escape(match.group('link_text'), table)}]({match.group('link_url').strip()})"
            )
        elif match.group("ref_text") is not None:
            out.append(escape(match.group("ref_text"), table))
        else:
            out.append("\n\n---\n\n")
    out.append(escape(text[position:], table))
    return "".join(out)


def paragraphs(description):
    if not description:
        return []
    return [str(p) for p in description] if isinstance(description, list) else [str(description)]


def flow(value):
    """A value on one line, as YAML would read it back."""
    if isinstance(value, str):
        # Quoted when YAML would read it as something else: "0", "true", "".
        tag = yaml.resolver.Resolver().resolve(yaml.ScalarNode, value, (True, False))
        return (
            json.dumps(str(value)) if value == "" or tag != "tag:yaml.org,2002:str" else str(value)
        )
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return yaml.dump(
        value, Dumper=_Dumper, default_flow_style=True, width=10**6, sort_keys=False
    ).strip()


def block(value):
    return yaml.dump(value, Dumper=_Dumper, default_flow_style=False, width=100, sort_keys=False)


INLINE_LIMIT = 70


class Page:
    """One README being written: its lines and its long default values."""

    def __init__(self, role):
        self.role = role
        self.lines = []
        self.long_values = {}

    def add(self, *lines):
        self.lines += lines

    def default_cell(self, name, option, from_defaults=True):
        role = self.role
        if option.get("required"):
            return "**required**"
        catalog = CATALOG_DEFAULTS.get(role.name, {})
        if from_defaults and name in catalog and name in role.defaults:
            group = role.defaults[name]
            count = len(group.get("rules") or []) if isinstance(group, dict) else 0
            return (
                f"the rule group {code(group.get('name', name), True)} "
                f"({count} alert{'' if count == 1 else 's'}) of "
                f"[{catalog[name]}]({catalog[name]})"
            )
        if from_defaults and name in role.defaults:
            value = role.defaults[name]
        elif "default" in option:
            value = option["default"]
        else:
            return "unset"
        text = flow(value)
        if len(text) <= INLINE_LIMIT and "\n" not in text:
            return code(text, True)
        self.long_values[name] = value
        return f"see [below](#{name.lower()})"


def type_cell(option):
    kind = option.get("type", "str")
    if kind == "list" and option.get("elements"):
        return f"list of {option['elements']}"
    return kind


def description_cell(option):
    text = markup(" ".join(paragraphs(option.get("description"))), table=True)
    if option.get("choices"):
        text += " Choices: " + ", ".join(code(flow(c), True) for c in option["choices"]) + "."
    if option.get("no_log"):
        text += " Secret: never shown in Ansible's output (`no_log`)."
    return text.strip()


def option_rows(page, options, prefix="", from_defaults=True):
    rows = []
    for name, option in options.items():
        full = f"{prefix}{name}"
        default = page.default_cell(name, option, from_defaults and not prefix)
        rows.append(
            f"| {code(full, True)} | {type_cell(option)} | {default} | {description_cell(option)} |"
        )
        if option.get("options"):
            suffix = "[]." if option.get("type") == "list" else "."
            rows += option_rows(page, option["options"], f"{full}{suffix}", False)
    return rows


def option_table(page, options):
    if not options:
        return ["None."]
    return [
        "| Variable | Type | Default | Description |",
        "|---|---|---|---|",
        *option_rows(page, options),
    ]


def example_for_main(role, uses):
    if not uses:
        return None
    play = uses[0].play
    lines = [f"- name: {play['name']}"] if play.get("name") else ["-"]
    for key in ("hosts", "become", "gather_facts", "force_handlers"):
        if key in play:
            lines.append(f"  {key}: {flow(play[key])}")
    lines += ["  roles:", f"    - role: {COLLECTION}.{role.name}"]
    if lines[0] == "-":
        lines[0:2] = [f"- {lines[1].strip()}"]
    return "\n".join(lines) + "\n"


def example_for(role, entry_point, uses):
    text = EXAMPLES.get((role.name, entry_point))
    if text is None and entry_point == "main":
        text = example_for_main(role, uses)
    if text is None:
        return None
    for name, option in role.options(entry_point).items():
        if option.get("required") and not re.search(rf"\b{name}\b", text):
            raise ValueError(
                f"{role.name}: the example of `{entry_point}` does not set the required `{name}`"
            )
    return text


def imports_of(role_name, roles):
    """Where the other roles import this one: [(tasks_from, importing role, tags, file)]."""
    found = []
    for other in roles:
        if other.name == role_name:
            continue
        for target, tasks_from, tags, file in role_task_tags(other).role_imports:
            if target == role_name:
                found.append(
                    (tasks_from, other.name, tags, file.relative_to(other.path).as_posix())
                )
    return found


def render(role, roles, rows, uses):
    """The README of a role, as Markdown."""
    page = Page(role)
    role_uses = uses.get(role.name, [])
    _render_head(page)
    _render_examples(page, role_uses)
    _render_variables(page)
    for entry_point in role.specs:
        if entry_point != "main":
            _render_entry_point(page, entry_point)
    _render_tags(page, roles, rows, role_uses)
    _render_long_values(page)
    while page.lines and page.lines[-1] == "":
        page.lines.pop()
    return "\n".join(page.lines) + "\n"


def _render_head(page):
    role = page.role
    meta = role.meta.get("galaxy_info") or {}
    main = role.specs.get("main") or {}
    page.add(GENERATED_MARKER, "", f"# {role.name}", "")
    if meta.get("description"):
        page.add(f"{code(f'{COLLECTION}.{role.name}')}: {escape(str(meta['description']))}.", "")
    if main.get("short_description"):
        page.add(f"**{markup(str(main['short_description']))}**", "")
    for paragraph in paragraphs(main.get("description")):
        page.add(markup(paragraph), "")
    page.add(
        "It is one part of the monitoring stack that the [top-level README](../../README.md) "
        "describes: how the roles fit together, the security model, operations and tests.",
        "",
        "## Requirements",
        "",
    )
    for platform in meta.get("platforms") or []:
        versions = ", ".join(str(v) for v in platform.get("versions") or [])
        page.add(f"- {platform.get('name')}" + (f" ({versions})" if versions else ""))
    if meta.get("min_ansible_version"):
        page.add(f"- ansible-core {meta['min_ansible_version']} or later")
    dependencies = ", ".join(code(str(d)) for d in role.meta.get("dependencies") or [])
    page.add(f"- Role dependencies: {dependencies or 'none'}", "")


def _render_examples(page, role_uses):
    role = page.role
    page.add("## Example playbook", "")
    example = example_for(role, "main", role_uses)
    if example:
        if role_uses:
            page.add(f"As the stack's `{role_uses[0].playbook}` applies it:", "")
        page.add("```yaml", example.rstrip("\n"), "```", "")
    else:
        page.add("The role is not applied on its own: other roles import its entry points.", "")
    for entry_point in role.specs:
        if entry_point != "main" and (text := example_for(role, entry_point, role_uses)):
            page.add(f"Entry point `{entry_point}`:", "", "```yaml", text.rstrip("\n"), "```", "")
    others = "; the other entry points take theirs from the `vars` of the task that calls them"
    page.add(
        "Set the variables of `main` in inventory (`group_vars/`, `host_vars/`) or in the play"
        + (others if len(role.specs) > 1 else "")
        + ".",
        "",
        "## Entry points",
        "",
    )
    for entry_point, spec in role.specs.items():
        summary = spec.get("short_description")
        page.add(f"- `{entry_point}`" + (f": {markup(str(summary))}" if summary else ""))
    page.add(
        "",
        "Ansible checks the variables against `meta/argument_specs.yml` before the role changes "
        "anything, under every tag.",
        "",
    )


def _render_variables(page):
    own, shared = {}, {}
    for name, option in page.role.options("main").items():
        (shared if name in SHARED_INVENTORY_VARIABLES else own)[name] = option
    page.add("## Variables of `main`", "", *option_table(page, own), "")
    if shared:
        page.add(
            "### Shared inventory variables",
            "",
            "Set once in inventory for every role of the stack (README "
            '"[Security](../../README.md#security)"), not defaults of this role: unset, the '
            "service speaks plain HTTP without authentication.",
            "",
            *option_table(page, shared),
            "",
        )


def _render_entry_point(page, entry_point):
    role = page.role
    spec = role.specs[entry_point]
    page.add(f"## Entry point `{entry_point}`", "")
    if spec.get("short_description"):
        page.add(f"**{markup(str(spec['short_description']))}**", "")
    for paragraph in paragraphs(spec.get("description")):
        page.add(markup(paragraph), "")
    main_options = role.options("main")
    options = role.options(entry_point)
    as_main = [n for n, o in options.items() if n in main_options and main_options[n] == o]
    rest = {n: o for n, o in options.items() if n not in as_main}
    end = ", and:" if rest else "."
    if as_main:
        missing = [n for n in main_options if n not in as_main]
        if len(missing) < len(as_main):
            names = ", ".join(code(n) for n in missing)
            page.add(
                "Takes every variable of `main`"
                + (f" except {names}" if missing else "")
                + f", as documented there{end}",
                "",
            )
        else:
            names = ", ".join(code(n) for n in as_main)
            page.add(f"Takes these variables of `main`, as documented there: {names}{end}", "")
    if rest or not as_main:
        page.add(*option_table(page, rest), "")


def _render_tags(page, roles, rows, role_uses):
    role = page.role
    page.add("## Tags", "")
    task_tags = role_task_tags(role)
    if task_tags.tags:
        page.add(
            "Set by the role's tasks:", "", "| Tag | Runs | Set on the tasks |", "|---|---|---|"
        )
        for tag, names in task_tags.tags.items():
            meaning = tag_meaning(tag, role.name, rows) or ""
            tasks = "; ".join(escape(n, True) for n in names)
            page.add(f"| {code(tag, True)} | {meaning} | {tasks} |")
        page.add("")
    else:
        page.add("The role sets no tags of its own.", "")
    playbook_tags = {}
    for use in role_uses:
        play = code(use.play.get("name", ""), True)
        for tag in use.play_tags:
            playbook_tags.setdefault(tag, f"the play {play} of `{use.playbook}`")
        for tag in use.role_tags:
            playbook_tags.setdefault(tag, f"the role in `{use.playbook}`")
    if playbook_tags:
        page.add(
            "Added by the stack's playbooks (`site.yml`); in a playbook of your own they exist "
            "only if you set them:",
            "",
            "| Tag | Runs | Set on |",
            "|---|---|---|",
        )
        for tag, where in playbook_tags.items():
            page.add(f"| {code(tag, True)} | {tag_meaning(tag, role.name, rows) or ''} | {where} |")
        page.add("")
    imports = imports_of(role.name, roles)
    if imports:
        page.add(
            "Its task files run under the tags of the roles that import them:",
            "",
            "| Task file | Imported by | Under the tags |",
            "|---|---|---|",
        )
        for tasks_from, importer, tags, file in sorted(imports):
            label = code(tasks_from, True)
            if tasks_from not in role.specs:
                label += " (no entry point)"
            tags_text = ", ".join(code(t, True) for t in tags) or "none"
            page.add(f"| {label} | `{importer}` ({file}) | {tags_text} |")
        page.add("")
    page.add(
        "What each tag runs across the stack: the top-level README's [Tags](../../README.md#tags).",
        "",
    )


def _render_long_values(page):
    role = page.role
    if not page.long_values:
        return
    page.add("## Default values", "", "The defaults too long for the tables above.", "")
    for name, value in page.long_values.items():
        source = role.defaults_files.get(name)
        page.add(f"### {name}", "")
        if source:
            page.add(f"From [{source}]({source}):", "")
        else:
            page.add("From `meta/argument_specs.yml`:", "")
        text = role.defaults_text.get(name) if source else None
        page.add("```yaml", (text or block({name: value})).rstrip("\n"), "```", "")


# --- Command line -----------------------------------------------------------


def readmes(root=ROOT):
    """Role name -> (README path, the README this script writes)."""
    roles = load_roles(root)
    rows = readme_tags(root)
    uses = playbook_uses(root)
    return {role.name: (role.path / "README.md", render(role, roles, rows, uses)) for role in roles}


def problems(root=ROOT):
    roles = load_roles(root)
    found = []
    for role in roles:
        found += check_role(role)
    found += check_shared(roles)
    found += check_tags(roles, readme_tags(root), playbook_uses(root))
    return found


def stale_readmes(root=ROOT):
    """[(path, unified diff)] of every README that is not what this script writes."""
    stale = []
    for path, text in readmes(root).values():
        current = path.read_text(encoding="utf-8") if path.is_file() else ""
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"{path.relative_to(root)} (committed)",
                tofile=f"{path.relative_to(root)} (generated)",
            )
            stale.append((path, "".join(diff)))
    return stale


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when defaults and specs disagree or a README is stale",
    )
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="the repository (default: this one)"
    )
    args = parser.parse_args(argv)
    root = args.root.resolve()

    found = problems(root)
    for problem in found:
        print(f"role-docs: {problem}", file=sys.stderr)
    if args.check:
        stale = stale_readmes(root)
        for path, diff in stale:
            print(
                f"role-docs: {path.relative_to(root)} is stale: run scripts/role_docs.py",
                file=sys.stderr,
            )
            print(diff, file=sys.stderr)
        return 1 if found or stale else 0
    for path, text in readmes(root).values():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(root)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
