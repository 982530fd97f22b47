"""Every module's DOCUMENTATION, EXAMPLES and RETURN parse, and options match the code."""

import ast
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted((ROOT / "plugins" / "modules").glob("*.py"))


def module_strings(path):
    tree = ast.parse(path.read_text())
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id in ("DOCUMENTATION", "EXAMPLES", "RETURN")
    }


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_documentation_examples_and_return_are_valid_yaml(path):
    strings = module_strings(path)

    assert set(strings) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}
    documentation = yaml.safe_load(strings["DOCUMENTATION"])
    assert documentation["module"] == path.stem
    assert documentation["short_description"]
    examples = yaml.safe_load(strings["EXAMPLES"])
    assert any(f"prometheus_alerting.stack.{path.stem}" in task for task in examples)
    yaml.safe_load(strings["RETURN"])


def test_ansible_doc_renders_every_module_with_its_fragments():
    """What a user reads: every module's page, the shared HTTP API options included."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    names = [f"prometheus_alerting.stack.{path.stem}" for path in MODULES]

    result = subprocess.run(
        ["ansible-doc", "--json", "-t", "module", *names],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "ERROR" not in result.stderr, result.stderr
    pages = json.loads(result.stdout)
    assert sorted(pages) == sorted(names)
    http_modules = [
        path.stem
        for path in MODULES
        if "prometheus_alerting.stack.http_api"
        in yaml.safe_load(module_strings(path)["DOCUMENTATION"]).get(
            "extends_documentation_fragment", []
        )
    ]
    # Every module built on the shared HTTP client documents its options through the fragment.
    assert http_modules == [
        path.stem
        for path in MODULES
        if "HTTP_API_ARGUMENT_SPEC" in path.read_text()
        or "http_api_argument_spec" in path.read_text()
    ]
    for name in http_modules:
        options = pages[f"prometheus_alerting.stack.{name}"]["doc"]["options"]
        assert {"url", "url_password", "ca_path", "timeout"} <= set(options)
