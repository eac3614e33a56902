"""What `pip install .` (not editable) ships: every package of the tree."""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def test_a_wheel_holds_every_package_of_the_tree() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = config["tool"]["setuptools"]
    assert not isinstance(setuptools["packages"], list), "a fixed list misses subpackages"
    include = setuptools["packages"]["find"]["include"]
    shipped = set(find_packages(str(ROOT), include=include))
    in_tree = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("fim_server", "fim_model")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert in_tree <= shipped
    assert not {p for p in shipped if not p.startswith(("fim_server", "fim_model"))}
