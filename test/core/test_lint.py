"""The codebase is lint-clean (ruff: pyflakes, pycodestyle, import order, pep8-naming; rules in ruff.toml).

Like ros2/examples' test_flake8: a lint finding fails `make test`, so it is fixed where it is made.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_ruff_is_clean():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
