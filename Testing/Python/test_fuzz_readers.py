"""A few hundred mutated .mrk.json, .fcsv, CSV and .seg.nrrd files: only UserError, never a crash.

fuzz_readers.py runs thousands (see Testing/results/fuzz_readers.json).
"""

from __future__ import annotations

from fuzz_readers import run


def test_mutated_annotation_files_raise_only_user_errors():
    result = run(400, seed=2024)
    assert result["total"]["inputs"] == 400
    assert result["total"]["crashes"] == 0, result["crashes"][:3]
    # The mutants exercise both paths: many are refused, many still read.
    for kind, tally in result["by_kind"].items():
        assert tally["user_errors"] > 10 and tally["read"] > 5, (kind, tally)
