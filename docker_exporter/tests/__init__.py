"""Tests of the Docker exporter (a package, so that its modules and conftest
never clash with other test trees' same-named ones in one pytest run)."""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(_ROOT, "docker_exporter", "src")
# The web config handling the exporter shares with the alert relay.
EXPORTER_WEB_SRC = os.path.join(_ROOT, "exporter_web", "src")
# The test helpers the services share (exporter_web_tests.support).
EXPORTER_WEB_TESTS = os.path.join(_ROOT, "exporter_web", "tests")
# For the exporter run as a process, from the sources.
PYTHONPATH = os.pathsep.join((SRC, EXPORTER_WEB_SRC))
for path in (EXPORTER_WEB_TESTS, EXPORTER_WEB_SRC, SRC):
    if path not in sys.path:
        sys.path.insert(0, path)
