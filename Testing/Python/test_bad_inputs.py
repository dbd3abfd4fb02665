"""Every case of the bad-input corpus (bad_inputs.py) ends cleanly through the real CLI.

Cleanly: exit code 2, one line ``error: <file>: ... Fix: ...`` naming the file at fault,
no traceback, nothing written to the output, and no input file changed.
"""

from __future__ import annotations

import pytest

from bad_inputs import CASES, make_base, run_case


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_base(tmp_path_factory.mktemp("bad-inputs-base"))


def test_corpus_covers_every_reader_and_command():
    assert len(CASES) >= 40
    assert {c.reader for c in CASES} >= {"imageio", "labels", "landmarks", "checkpoint", "output", "runlock"}
    assert {c.command for c in CASES} >= {"pretrain", "finetune", "predict"}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_ends_cleanly(case, base, tmp_path):
    result = run_case(case, tmp_path / "case", base)
    failed = [name for name, ok in result["checks"].items() if not ok]
    assert not failed, f"{failed}: {result['crash'] or result['stderr']}"
