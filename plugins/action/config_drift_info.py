"""Action plugin of config_drift_info: what a service runs against its files, on the controller.

The module gathers on the host (files, metrics, the API's view of the loaded
configuration); this plugin parses the YAML here, where a YAML library is
sure to be, and returns only the differences, never a file's content.
"""

import fnmatch
import json
import os
import re
import struct
from datetime import UTC, datetime

import yaml
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.http_api import (
    duration_seconds,
)

# Prometheus' own default, for groups without an interval and configs without one.
DEFAULT_EVALUATION_INTERVAL = "1m"
# What the module reads besides the config file: where the roles keep rule
# files and templates. A rule_files pattern outside these is reported as
# not compared.
READ = {
    "prometheus": ["rules/*.yml", "rules/*.yaml", "rules/**/*.yml", "rules/**/*.yaml"],
    "alertmanager": ["templates/*"],
}

_SPACE = re.compile(r"\s+")


def alertmanager_hash(md5_hex):
    """alertmanager_config_hash for a file's MD5: its first 48 bits, little-endian."""
    return float(struct.unpack("<Q", bytes.fromhex(md5_hex)[:6] + b"\0\0")[0])


def _when(timestamp):
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _load_yaml(text, where, differences):
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        differences.append(f"{where} is not valid YAML on disk: {err}")
        return None


# --- common -------------------------------------------------------------------------


def reload_differences(service, gathered, differing):
    """A reload owed, a failed reload, and which of the files whose content is not what the
    service loaded (`differing`) were modified after its last successful reload.

    A file's modification time alone is never a difference: a file touched, or put back as
    it was, after the reload is what the service runs.
    """
    differences = []
    metrics = gathered["metrics"]
    successful = metrics.get(f"{service}_config_last_reload_successful")
    reloaded_at = metrics.get(f"{service}_config_last_reload_success_timestamp_seconds", 0.0)
    if gathered.get("marker") is not None:
        try:
            record = json.loads(gathered["marker"])
        except ValueError:
            record = {}
        files = ", ".join(record.get("files") or []) or "its configuration"
        differences.append(
            f"a reload is owed since {record.get('since', '?')} ({files} went live, and the run "
            "stopped before the reload): rerun site.yml to reload"
        )
    if successful != 1.0:
        differences.append(
            f"its last reload failed ({service}_config_last_reload_successful is {successful}): "
            "it runs an older configuration than the one on disk"
        )
    newer = sorted(
        path
        for path in differing
        if path in gathered["files"] and gathered["files"][path]["mtime"] > reloaded_at
    )
    if newer:
        differences.append(
            f"changed on disk after its last successful reload at {_when(reloaded_at)}: "
            + ", ".join(newer)
        )
    return differences, reloaded_at


# --- Prometheus ---------------------------------------------------------------------


def disk_rule_groups(config_file, files, differences, differing=None):
    """The rule groups of the files prometheus.yml names, as on disk.

    Returns ({(file, group name): group}, the default evaluation interval, the
    rule_files patterns outside the rules/ directory, which are not compared).
    A file that is not valid YAML is a difference, added to `differing`.
    """
    differing = set() if differing is None else differing
    config = _load_yaml(files[config_file]["text"], config_file, differences)
    if config is None:
        differing.add(config_file)
        return None, DEFAULT_EVALUATION_INTERVAL, []
    directory = os.path.dirname(config_file)
    interval = (config.get("global") or {}).get("evaluation_interval", DEFAULT_EVALUATION_INTERVAL)
    groups, outside = {}, []
    for pattern in config.get("rule_files") or []:
        absolute = os.path.normpath(os.path.join(directory, str(pattern)))
        if not absolute.startswith(os.path.join(directory, "rules") + os.sep):
            outside.append(str(pattern))
            continue
        for path in sorted(p for p in files if p != config_file and fnmatch.fnmatch(p, absolute)):
            document = _load_yaml(files[path]["text"], path, differences)
            if document is None:
                differing.add(path)
            for group in (document or {}).get("groups") or []:
                groups[(path, str(group.get("name")))] = group
    return groups, interval, outside


def _rule_name(rule):
    return str(rule.get("alert") or rule.get("record"))


def rule_differences(config_file, files, loaded_groups, default_interval, disk_groups, formatted):
    """Differences between the loaded rule groups and the groups on disk, and the rule files
    they are in.

    `formatted` maps a disk expression to Prometheus' formatting of it (None where
    Prometheus could not format it); expressions whose text is the loaded one need none.
    Returns (differences, {path of a file whose groups differ}).
    """
    differences, differing = [], set()
    directory = os.path.dirname(config_file)
    loaded = {
        (os.path.normpath(os.path.join(directory, g["file"])), g["name"]): g for g in loaded_groups
    }
    for key in sorted(set(disk_groups) - set(loaded)):
        differences.append(f"rule group {key[1]} ({key[0]}) is on disk but not loaded")
        differing.add(key[0])
    for key in sorted(set(loaded) - set(disk_groups)):
        differences.append(f"rule group {key[1]} ({key[0]}) is loaded but not on disk")
        differing.add(key[0])
    for key in sorted(set(loaded) & set(disk_groups)):
        group = _group_differences(
            key[1], disk_groups[key], loaded[key], default_interval, formatted
        )
        if group:
            differences += group
            differing.add(key[0])
    return differences, differing


def _group_differences(name, disk, loaded, default_interval, formatted):
    differences = []
    want_interval = duration_seconds(disk.get("interval", default_interval))
    if loaded.get("interval") is not None and want_interval != float(loaded["interval"]):
        differences.append(
            f"rule group {name}: interval {disk.get('interval', default_interval)} on disk, "
            f"{loaded['interval']:g}s running"
        )
    disk_rules = [(_rule_name(r), r) for r in disk.get("rules") or []]
    loaded_rules = [(r["name"], r) for r in loaded["rules"]]
    disk_names = [rule_name for rule_name, _rule in disk_rules]
    loaded_names = [rule_name for rule_name, _rule in loaded_rules]
    if disk_names != loaded_names:
        added = [n for n in disk_names if n not in loaded_names]
        removed = [n for n in loaded_names if n not in disk_names]
        detail = "; ".join(
            part
            for part in (
                f"on disk only: {', '.join(added)}" if added else "",
                f"running only: {', '.join(removed)}" if removed else "",
                "in another order" if not (added or removed) else "",
            )
            if part
        )
        differences.append(f"rule group {name}: its rules differ ({detail})")
        return differences
    for (rule_name, rule), (_name, running) in zip(disk_rules, loaded_rules, strict=True):
        where = f"rule group {name}, {rule_name}"
        expr = str(rule.get("expr", ""))
        if not same_expression(expr, running.get("query") or "", formatted):
            differences.append(
                f"{where}: expression on disk `{_flat(expr)}`, running `{running.get('query')}`"
            )
        if running.get("type") == "alerting":
            want = duration_seconds(rule.get("for", 0)) or 0.0
            if want != float(running.get("duration") or 0):
                differences.append(
                    f"{where}: for {rule.get('for', '0s')} on disk, "
                    f"{running.get('duration')}s running"
                )
            for field in ("labels", "annotations"):
                on_disk = {str(k): str(v) for k, v in (rule.get(field) or {}).items()}
                if on_disk != (running.get(field) or {}):
                    differences.append(f"{where}: its {field} differ")
        elif rule.get("labels"):
            on_disk = {str(k): str(v) for k, v in rule["labels"].items()}
            if on_disk != (running.get("labels") or {}):
                differences.append(f"{where}: its labels differ")
    return differences


def _flat(expression):
    return _SPACE.sub(" ", expression).strip()


def same_expression(disk, running, formatted):
    """Whether a disk expression is the loaded one: the same tokens once Prometheus formats it."""
    if _SPACE.sub("", disk) == _SPACE.sub("", running):
        return True
    normal = formatted.get(disk)
    return normal is not None and _SPACE.sub("", normal) == _SPACE.sub("", running)


def expressions_to_format(disk_groups, loaded_groups):
    """Disk expressions whose text differs from every loaded query: Prometheus must format them."""
    running = {_SPACE.sub("", r.get("query") or "") for g in loaded_groups for r in g["rules"]}
    return sorted(
        {
            str(rule.get("expr", ""))
            for group in disk_groups.values()
            for rule in group.get("rules") or []
            if _SPACE.sub("", str(rule.get("expr", ""))) not in running
        }
    )


# --- Alertmanager -------------------------------------------------------------------


# Lists of matchers in Alertmanager's syntax.
MATCHER_LISTS = ("matchers", "source_matchers", "target_matchers")
_MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')


def _matcher(text):
    """A matcher as (name, operator, value), however it is quoted: `a=b` is `a="b"`."""
    match = _MATCHER.match(str(text))
    return match.groups() if match else (str(text), "", "")


def _same_scalar(disk, running, directory):
    """Whether a setting's value on disk is the running one, as Alertmanager rewrites it."""
    if running == "<secret>" or str(disk) == str(running):
        return True
    if isinstance(disk, bool | int | float) and str(disk).lower() == str(running).lower():
        return True
    if duration_seconds(disk) is not None and duration_seconds(disk) == duration_seconds(running):
        return True  # 60s is 1m
    if isinstance(disk, str) and isinstance(running, str) and running.startswith("/"):
        # Relative file names (templates, *_file) are loaded relative to the config file.
        return os.path.normpath(os.path.join(directory, disk)) == running
    return False


def config_differences(disk, running, directory, path=""):
    """Settings of `disk` whose value differs in `running` (Alertmanager's re-serialised config).

    Alertmanager fills in defaults, so only what the file sets is compared; values it
    hides as <secret> are skipped; durations compare by length (60s is 1m), file
    names relative to `directory`, matchers whatever their quoting and order.
    """
    differences = []
    if isinstance(disk, dict) and isinstance(running, dict):
        for key, value in disk.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in running:
                # The services leave out zero values (false, 0, empty) when they show a
                # configuration: only a value that is not one of those is missing.
                if value not in (None, "", [], {}) and value is not False and value != 0:
                    differences.append(f"{where}: set on disk, not in the running configuration")
                continue
            differences += config_differences(value, running[key], directory, where)
    elif isinstance(disk, list) and isinstance(running, list):
        if path.rsplit(".", 1)[-1] in MATCHER_LISTS:
            # Alertmanager sorts a route's matchers: their order means nothing.
            if sorted(map(_matcher, disk)) != sorted(map(_matcher, running)):
                differences.append(f"{path}: {_short(disk)} on disk, {_short(running)} running")
        elif len(disk) != len(running):
            differences.append(f"{path}: {len(disk)} entries on disk, {len(running)} running")
        else:
            for index, (a, b) in enumerate(zip(disk, running, strict=True)):
                differences += config_differences(a, b, directory, f"{path}[{index}]")
    elif not _same_scalar(disk, running, directory):
        differences.append(f"{path}: {_short(disk)} on disk, {_short(running)} running")
    return differences


def _short(value):
    text = json.dumps(value) if isinstance(value, dict | list) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def prometheus_config_differences(config_file, gathered):
    """Settings of prometheus.yml whose value is not the loaded one (/api/v1/status/config).

    A file that is not valid YAML is reported by disk_rule_groups.
    """
    try:
        disk = yaml.safe_load(gathered["files"][config_file]["text"]) or {}
        running = yaml.safe_load(gathered["loaded"].get("config") or "") or {}
    except yaml.YAMLError:
        return []
    return [
        f"{config_file}: {difference}"
        for difference in config_differences(disk, running, os.path.dirname(config_file))
    ]


def unshown_differences(gathered, paths, reloaded_at):
    """Files whose loaded content the service does not show (Alertmanager's templates).

    One modified after the last successful reload differs, unless its content is the one
    the reload record holds (the roles' handlers write it after each reload they confirm).
    """
    record = gathered.get("record") or {}
    differing = set()
    for path in paths:
        info = gathered["files"][path]
        if info["mtime"] > reloaded_at and record.get(path) != info.get("sha256"):
            differing.add(path)
    return differing


def alertmanager_differences(config_file, gathered):
    differences = []
    running_hash = gathered["metrics"].get("alertmanager_config_hash")
    if running_hash == alertmanager_hash(gathered["files"][config_file]["md5"]):
        return differences
    disk = _load_yaml(gathered["files"][config_file]["text"], config_file, differences)
    try:
        running = yaml.safe_load(gathered["loaded"]["config"]) or {}
    except yaml.YAMLError:
        running = None
    if disk is not None and running is not None:
        differences += config_differences(disk, running, os.path.dirname(config_file))
    if not differences:
        differences.append(
            f"{config_file} is not the file Alertmanager loaded (alertmanager_config_hash "
            "differs), though no setting it can show differs"
        )
    return differences


# --- the plugin ---------------------------------------------------------------------


class ActionModule(ActionBase):
    """Gather on the host with the module, compare here, return the differences."""

    def _gather(self, args, task_vars):
        result = self._execute_module(
            module_name=self._task.action, module_args=args, task_vars=task_vars
        )
        if result.get("failed"):
            raise AnsibleActionFail(result.get("msg", "config_drift_info failed"))
        return result

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        service, config_file = args.get("service"), args.get("config_file")
        if service not in READ or not config_file:
            raise AnsibleActionFail(
                "config_drift_info needs service (prometheus or alertmanager) and config_file"
            )
        args["read"] = READ[service]
        gathered = self._gather(args, task_vars)
        if config_file not in gathered["files"]:
            raise AnsibleActionFail(f"{config_file} does not exist on the host")
        watched = sorted(gathered["files"])
        reloaded_at = gathered["metrics"].get(
            f"{service}_config_last_reload_success_timestamp_seconds", 0.0
        )
        compared = {"files": len(watched)}
        content, differing = [], set()

        if service == "prometheus":
            settings = prometheus_config_differences(config_file, gathered)
            if settings:
                differing.add(config_file)
            disk_groups, interval, outside = disk_rule_groups(
                config_file, gathered["files"], content, differing
            )
            content += settings
            if outside:
                compared["not_compared"] = outside
            if disk_groups is not None:
                loaded_groups = gathered["loaded"]["rule_groups"]
                to_format = expressions_to_format(disk_groups, loaded_groups)
                formatted = {}
                if to_format:
                    answer = self._gather({**args, "format": to_format}, task_vars)
                    formatted = dict(zip(to_format, answer["formatted"], strict=True))
                rules, rule_files = rule_differences(
                    config_file, gathered["files"], loaded_groups, interval, disk_groups, formatted
                )
                content += rules
                differing |= rule_files
                compared.update(
                    rule_groups=len(disk_groups),
                    rules=sum(len(g.get("rules") or []) for g in disk_groups.values()),
                )
            compared["settings"] = "every setting of prometheus.yml"
        else:
            settings = alertmanager_differences(config_file, gathered)
            if settings:
                differing.add(config_file)
            templates = unshown_differences(
                gathered, [path for path in watched if path != config_file], reloaded_at
            )
            differing |= templates
            content += settings + [
                f"{path}: modified after the last successful reload, and not the content "
                "recorded then (Alertmanager does not show the templates it loaded)"
                for path in sorted(templates)
            ]
            compared["settings"] = "alertmanager_config_hash and every setting of the file"

        differences, reloaded_at = reload_differences(service, gathered, differing)
        differences += content

        name = service.capitalize()
        summary = (
            f"{name} runs the configuration on disk (last loaded {_when(reloaded_at)})"
            if not differences
            else f"{name} runs another configuration than the one on disk: "
            + "; ".join(differences)
        )
        result.update(
            changed=False,
            in_sync=not differences,
            summary=summary,
            differences=differences,
            reloaded_at=reloaded_at,
            compared=compared,
        )
        return result
