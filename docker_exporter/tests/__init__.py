"""Tests of the Docker exporter (a package, so that its modules and conftest
never clash with other test trees' same-named ones in one pytest run)."""

import os
import sys

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)
