"""The tree passes the project's lint rules (pyproject.toml [tool.ruff])."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    proc = subprocess.run([str(ruff), "check", "--no-cache", "."], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_wheel_holds_only_pulse_keeps_the_floors_and_type_checks() -> None:
    """import-linter's contracts and mypy (pyproject.toml) on the package as pip installs it."""
    from pulse.devkit.checks import check_floors

    report = check_floors(root=ROOT, types=True)
    assert report.top_level == ["pulse"], report.top_level
    assert report.lint_exit == 0, report.lint_output
    assert "BROKEN" not in report.lint_output and "KEPT" in report.lint_output
    assert report.mypy_exit == 0, report.mypy_output


def test_the_repository_folders_do_not_import_as_top_level_packages() -> None:
    """`import models` (or sql, web, ...) fails, even from the repository root."""
    for name in ("models", "sql", "listeners", "outreach", "web"):
        proc = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=ROOT,
                              capture_output=True, text=True, check=False)
        assert proc.returncode != 0, name
        assert "ImportError" in proc.stderr or "ModuleNotFoundError" in proc.stderr, proc.stderr
        ok = subprocess.run([sys.executable, "-c", f"import pulse.{name}"], cwd=ROOT,
                            capture_output=True, text=True, check=False)
        assert ok.returncode == 0, ok.stderr
