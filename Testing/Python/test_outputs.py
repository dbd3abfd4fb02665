"""The one output-folder policy (DiffusionSegLib/training/outputs.py)."""

from __future__ import annotations

import pytest

from DiffusionSegLib.errors import UserError
from DiffusionSegLib.training.outputs import check_output_folder, fresh_folder, partial_folder, staged_folder


def test_a_non_empty_folder_is_refused_unless_it_is_a_model_to_overwrite(tmp_path):
    out = tmp_path / "out"
    check_output_folder(out)                          # missing
    out.mkdir()
    check_output_folder(out)                          # empty
    (out / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="not empty.*Fix: choose a new --out"):
        check_output_folder(out, overwrite=True)      # not a model: never deleted
    (out / "config.json").write_text("{}")
    check_output_folder(out, overwrite=True)
    with pytest.raises(UserError, match="is a file"):
        check_output_folder(out / "notes.txt")


def test_fresh_folder_replaces_only_a_model(tmp_path):
    out = tmp_path / "model"
    assert fresh_folder(out) is True
    assert fresh_folder(out) is False                 # empty, there before this run
    (out / "config.json").write_text("{}")
    assert fresh_folder(out, overwrite=True) is True  # made again: a failed run removes it (the old model is gone)
    assert list(out.iterdir()) == []


def test_a_staged_folder_appears_complete_or_not_at_all(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staged_folder(out) as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("cancelled")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with staged_folder(out) as tmp:
        (tmp / "a.txt").write_text("new")
        assert not out.exists()
    assert (out / "a.txt").read_text() == "new"
    assert not partial_folder(out).exists()


def test_a_model_is_replaced_only_when_the_new_one_is_complete(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "config.json").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_folder(out) as tmp:
            (tmp / "config.json").write_text("new")
            raise RuntimeError("cancelled")
    assert (out / "config.json").read_text() == "old"
    with staged_folder(out) as tmp:
        (tmp / "config.json").write_text("new")
    assert (out / "config.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_killed_runs_leftovers_are_cleared(tmp_path):
    out = tmp_path / "out"
    partial_folder(out).mkdir()
    (partial_folder(out) / "stale.txt").write_text("x")
    with staged_folder(out) as tmp:
        assert list(tmp.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
