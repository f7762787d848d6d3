"""The layers show in the imports: the import-linter contracts of pyproject.toml hold.

The contracts say: rankscope.cli > (rankscope.real | rankscope.tui) > rankscope.simulator; the
simulator imports neither torch nor textual; the TUI never imports torch; no two files or
folders of one package import each other in a loop. Function-local imports count (grimp reads
every import statement). grimp finds a package's modules by walking its folder, so the test
copies the sources into a temporary folder in their installed layout (simulator/ as
rankscope/simulator/, ...) and runs ``lint-imports`` there.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYOUT = {"rankscope": "rankscope", "simulator": "rankscope/simulator", "real": "rankscope/real",
          "tui": "rankscope/tui"}


def test_import_linter_contracts_hold(tmp_path):
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.fail("lint-imports is not installed: pip install -e '.[dev]'")
    for src, dst in LAYOUT.items():
        shutil.copytree(ROOT / src, tmp_path / dst, ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([str(lint), "--no-cache", str(ROOT / "pyproject.toml")], cwd=tmp_path,
                         env={"PYTHONPATH": str(tmp_path), "PATH": ""}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "4 kept, 0 broken" in out.stdout
