"""Checks on the package as it installs: its contents, the import floors, and the types.

`python -m pulse.devkit.checks` (run by `make lint`; tests/test_lint.py runs the same checks)
builds the wheel, unpacks it, checks that it holds the one top-level package `pulse` (no
`models`, `sql`, `web`, ... of its own, no DAG files), runs import-linter's contracts and
mypy (both configured in pyproject.toml) against that copy. They run on the built wheel
rather than on the checkout because the repository keeps models/, sql/, listeners/, outreach/
and web/ at its top level and only the install maps them under `pulse`: both tools read a
package from its own folder.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from pulse.core.settings import PROJECT_ROOT


@dataclass
class FloorsReport:
    """What the check found: the wheel's top-level names and import-linter's verdict."""

    wheel: str
    top_level: list[str]
    lint_exit: int
    lint_output: str
    mypy_exit: int | None = None
    mypy_output: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


#: What a wheel is built from (a copy of these, so no stale build/ folder leaks into it).
SOURCES = ("pyproject.toml", "README.md", "pulse", "models", "sql", "listeners", "outreach",
           "web")


def build_wheel(out_dir: Path, *, root: Path = PROJECT_ROOT) -> Path:
    """Build the project's wheel into `out_dir` (pip, as users install it) from a fresh copy
    of its sources; its path."""
    src = out_dir.parent / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        path = root / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--disable-pip-version-check", "-w", str(out_dir), str(src)],
                   check=True, capture_output=True, text=True)
    wheels = sorted(out_dir.glob("*.whl"))
    if not wheels:
        raise FileNotFoundError(f"pip wrote no wheel into {out_dir}")
    return wheels[-1]


def top_level_names(wheel: Path) -> list[str]:
    """The top-level entries of a wheel, without its .dist-info folder."""
    with zipfile.ZipFile(wheel) as zf:
        names = {n.split("/", 1)[0] for n in zf.namelist()}
    return sorted(n for n in names if not n.endswith(".dist-info"))


def check_floors(*, root: Path = PROJECT_ROOT, types: bool = False) -> FloorsReport:
    """Build, unpack and lint the installed layout (and type-check it with `types=True`);
    every problem in `problems`."""
    with tempfile.TemporaryDirectory(prefix="pulse-floors-") as tmp:
        tmp_path = Path(tmp)
        wheel = build_wheel(tmp_path / "dist", root=root)
        site = tmp_path / "site"
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site)
        top = top_level_names(wheel)
        lint = Path(sys.executable).with_name("lint-imports")
        proc = subprocess.run([str(lint), str(root / "pyproject.toml")], cwd=site,
                              env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, check=False)
        report = FloorsReport(wheel=wheel.name, top_level=top, lint_exit=proc.returncode,
                              lint_output=proc.stdout + proc.stderr)
        if types:
            mypy = subprocess.run([str(Path(sys.executable).with_name("mypy")),
                                   "--config-file", str(root / "pyproject.toml"),
                                   "--no-incremental", "-p", "pulse"], cwd=site,
                                  env={"PATH": "/usr/bin:/bin", "MYPYPATH": str(site)},
                                  capture_output=True, text=True, check=False)
            report.mypy_exit = mypy.returncode
            report.mypy_output = mypy.stdout + mypy.stderr
            if mypy.returncode != 0:
                report.problems.append("mypy found type errors")
    if top != ["pulse"]:
        report.problems.append(f"the wheel must hold only the package `pulse`, not {top}")
    if proc.returncode != 0:
        report.problems.append("import-linter found imports that break the floors")
    return report


def main() -> int:
    report = check_floors(types="--no-types" not in sys.argv[1:])
    print(report.lint_output.rstrip())
    if report.mypy_exit is not None:
        print(report.mypy_output.rstrip())
    print(f"wheel {report.wheel}: top-level {', '.join(report.top_level)}")
    for problem in report.problems:
        print(f"error: {problem}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
