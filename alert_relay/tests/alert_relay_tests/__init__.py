"""Tests of the alert relay: a package of its own name, so that its conftest and helpers
never clash with another test tree's (tests/unit imports its conftest as "conftest",
docker_exporter/tests is a package named "tests") in a whole-repository run."""

import os
import sys

_ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)
SRC = os.path.join(_ROOT, "alert_relay", "src")
# The web config handling the relay shares with the Docker exporter.
EXPORTER_WEB_SRC = os.path.join(_ROOT, "exporter_web", "src")
# The test helpers the services share (exporter_web_tests.support).
EXPORTER_WEB_TESTS = os.path.join(_ROOT, "exporter_web", "tests")
# For the relay run as a process, from the sources.
PYTHONPATH = os.pathsep.join((SRC, EXPORTER_WEB_SRC))
for path in (EXPORTER_WEB_TESTS, EXPORTER_WEB_SRC, SRC):
    if path not in sys.path:
        sys.path.insert(0, path)
