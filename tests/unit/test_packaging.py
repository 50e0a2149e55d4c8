"""Every Python package in the source tree is in the wheel: the images and `pip install pulsetrain` get
what the editable install the tests use sees (a missing subpackage once left the operator image unable
to import its builders)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_with_an_init_is_listed_for_the_wheel() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed, roots = set(setuptools["packages"]), setuptools["package-dir"]
    found = set()
    for package in ("pulsetrain", "pulsetrain_operator"):
        base = ROOT / (roots.get(package) or f"{roots['']}/{package}")
        for init in base.rglob("__init__.py"):
            relative = init.parent.relative_to(base)
            found.add(".".join((package, *relative.parts)))
    assert found == listed, f"packages in the tree but not in pyproject: {sorted(found - listed)}; " \
                            f"listed but missing: {sorted(listed - found)}"
