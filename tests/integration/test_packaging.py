"""The package builds quietly and carries the desk's files, as `pip install` and a wheel see it."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DESK = ROOT / "src" / "trading_orders" / "adapters" / "http" / "desk"


def test_a_wheel_holds_the_desk_files_and_its_build_warns_of_nothing(tmp_path: Path) -> None:
    # A copy, so the build's egg-info and build/ never land in the checkout.
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.log")
    for name in ("src", "Logs"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    # The setuptools of the dev extras builds offline, the way pip's isolated build does.
    build = subprocess.run(
        [sys.executable, "-c", "import sys; from setuptools import build_meta; build_meta.build_wheel(sys.argv[1])",
         str(tmp_path / "dist")],
        cwd=source, capture_output=True, text=True, check=True,
    )  # fmt: skip
    output = build.stdout + build.stderr
    assert "BuildBackendWarning" not in output and "absent from the `packages` configuration" not in output, output
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packed = {
            Path(name).name for name in archive.namelist() if name.startswith("trading_orders/adapters/http/desk/")
        }
    assert packed == {path.name for path in DESK.iterdir() if path.is_file()}
