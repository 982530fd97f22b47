"""pytest loads this for every scenario's testinfra tests (molecule/*/tests)."""

import sys
from pathlib import Path

# Shared helpers: `from molecule_helpers import run_playbook, ...`.
sys.path.insert(0, str(Path(__file__).resolve().parent / "shared"))
