"""Helpers the tests of the services that share exporter_web share too (the Docker
exporter's and the alert relay's): polling, HTTP servers run in a thread,
promtool, certificates. Not part of the exporter-web wheel (src/ only): each
service's test package puts this folder on sys.path."""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(_ROOT, "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)
