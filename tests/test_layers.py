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


def test_the_wheel_installs_one_top_level_package(tmp_path):
    """`pip install .` puts `rankscope` (and its dist-info) into site-packages, nothing else: no
    top-level `simulator`, `real` or `tui` to collide with other projects'."""
    import zipfile

    build = tmp_path / "build"
    shutil.copytree(ROOT, build, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "build", "*.egg-info",
                                                               ".hypothesis", ".pytest_cache", "traces", "tests"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path / "dist"), str(build)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("rankscope-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"rankscope"}
    # every source file is in it: a subpackage missing from pyproject's `packages` fails here
    sources = {f"{LAYOUT[src]}/{f.relative_to(ROOT / src).as_posix()}" for src in LAYOUT
               for f in (ROOT / src).rglob("*.py") if "__pycache__" not in f.parts}
    assert sources - set(names) == set()
    entry = [n for n in names if n.endswith("entry_points.txt")]
    assert "rankscope = rankscope.cli:run" in zipfile.ZipFile(wheel).read(entry[0]).decode()
