"""The package as it installs, and the import floors checked on it.

`python -m pulse.devkit.floors` (run by `make lint` and by tests/test_lint.py) builds the
wheel, unpacks it, checks that it holds the one top-level package `pulse` (no `models`,
`sql`, `web`, ... of its own, no DAG files), and runs import-linter's contracts from
pyproject.toml against that copy. The check runs on the built wheel rather than on the
checkout because the repository keeps models/, sql/, listeners/, outreach/ and web/ at its top
level and only the install maps them under `pulse` (import-linter reads the files of a
package's own folder).
"""
from __future__ import annotations

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
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def build_wheel(out_dir: Path, *, root: Path = PROJECT_ROOT) -> Path:
    """Build the project's wheel into `out_dir` (pip, as users install it); its path."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--disable-pip-version-check", "-w", str(out_dir), str(root)],
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


def check_floors(*, root: Path = PROJECT_ROOT) -> FloorsReport:
    """Build, unpack and lint the installed layout; every problem in `problems`."""
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
    if top != ["pulse"]:
        report.problems.append(f"the wheel must hold only the package `pulse`, not {top}")
    if proc.returncode != 0:
        report.problems.append("import-linter found imports that break the floors")
    return report


def main() -> int:
    report = check_floors()
    print(report.lint_output.rstrip())
    print(f"wheel {report.wheel}: top-level {', '.join(report.top_level)}")
    for problem in report.problems:
        print(f"error: {problem}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
