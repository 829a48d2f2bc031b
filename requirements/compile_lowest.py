"""Write requirements/lowest-direct.txt: the runtime dependencies at the lowest versions pyproject.toml allows.

``make lock`` runs this after ``uv lock``. The runtime dependencies and the otel and uvloop extras resolve
to their lowest allowed versions (uv's ``lowest-direct``: what a user with old pins gets); the test tools of
the ``dev`` group stay at their locked versions, so the run differs from the locked one only in what it is
there to test. Transitive dependencies resolve to the newest that fit, as they would for such a user; the
result is committed, so every run installs the same set.

Usage: python requirements/compile_lowest.py UV OUTPUT
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    for stop in "<>=!~;[ ":
        requirement = requirement.split(stop, 1)[0]
    return requirement.strip().lower().replace("_", "-")


def locked_tool_pins() -> list[str]:
    """``name==version`` for each direct dependency of the dev group, as uv.lock pins it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tools = {_name(r) for r in project["dependency-groups"]["dev"]}
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    pins = {p["name"]: p["version"] for p in lock["package"] if p["name"] in tools and "version" in p}
    missing = tools - pins.keys()
    if missing:
        raise SystemExit(f"compile_lowest: uv.lock has no entry for {sorted(missing)}: run `uv lock` first")
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def main() -> None:
    uv, output = sys.argv[1], sys.argv[2]
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as constraints:
        constraints.write("\n".join(locked_tool_pins()) + "\n")
        constraints.flush()
        subprocess.run(
            [
                uv,
                "pip",
                "compile",
                "-q",
                "--resolution",
                "lowest-direct",
                "--all-extras",
                "--group",
                "dev",
                "--constraints",
                constraints.name,
                "--no-header",
                "--no-annotate",
                "--python-version",
                "3.11",
                "pyproject.toml",
                "-o",
                output,
            ],
            cwd=ROOT,
            check=True,
        )
    text = Path(ROOT / output).read_text()
    header = "# The lowest runtime versions pyproject.toml allows, test tools as locked: `make lock` writes this file.\n"
    Path(ROOT / output).write_text(header + text)


if __name__ == "__main__":
    main()
