"""scripts/mutants.py stays current: each mutant still finds the one line it changes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "mutants.py"


def load_mutants() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutants_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_mutant_finds_its_original_text_exactly_once() -> None:
    assert load_mutants().stale_mutants() == []


def test_a_moved_or_doubled_line_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mutants = load_mutants()
    (tmp_path / "a.py").write_text("x = 1\nx = 1\ny = 2\n", encoding="utf-8")
    monkeypatch.setattr(
        mutants,
        "MUTANTS",
        [("a.py", "y = 2", "y = 3", "kept"), ("a.py", "x = 1", "x = 0", "doubled"),
         ("a.py", "z = 3", "z = 4", "moved")],
    )  # fmt: skip
    assert mutants.stale_mutants(tmp_path) == [
        "doubled (a.py: original found 2×)",
        "moved (a.py: original found 0×)",
    ]
