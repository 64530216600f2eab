"""The layering of DESIGN.md holds: each layer imports only the layers below it, library code
never imports the CLI, and no modules import each other in a cycle.

The contracts live in pyproject.toml under ``[tool.importlinter]``; import-linter reads every
import statement, those inside functions included, so a local import cannot hide a violation.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports not found: pip install -e '.[test]' installs import-linter")
    # --no-cache: never write a cache folder into the (shared) checkout.
    proc = subprocess.run(
        [exe, "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"lint-imports failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    assert "0 broken" in proc.stdout, proc.stdout
