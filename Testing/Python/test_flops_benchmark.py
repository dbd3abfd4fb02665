"""benchmarks/flops.py --quick: the FLOP-counted benchmark runs and records what issue 16 asks for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_mode_writes_the_record(tmp_path):
    out = tmp_path / "flops.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "flops.py"), "--quick", "--threads", "1",
                    "--out", str(out)], check=True, env=env, cwd=REPO, capture_output=True, timeout=300)
    report = json.loads(out.read_text())
    assert report["threads"] == 1 and report["quick"] is True
    assert report["device"] == "cpu" and report["precision"] == "fp32"
    assert report["peak_gflops"]["matmul"] > 0 and report["peak_gflops"]["conv"] > 0
    assert len(report["peak_measurements"]) == 2
    assert {"git_commit", "versions", "machine"} <= set(report["provenance"])
    assert "load_1min" in report["load_at_end"] and report["wall_seconds"] > 0
    assert {(r["preset"], r["dims"]) for r in report["records"]} == {("tiny", 2), ("tiny", 3)}
    for record in report["records"]:
        for part in ("train", "predict"):
            figures = record[part]
            assert figures["gflop_per_step"] > 0 and figures["seconds_per_step"] > 0
            for kernel, peak in report["peak_gflops"].items():
                assert 0 < figures["share_of_peak"][kernel] == round(figures["gflops"] / peak, 4)
            assert "load_1min" in figures["load_before"]
        train, predict = record["train"], record["predict"]
        # Per image, a training step is a forward and a backward (about twice the forward's FLOPs).
        assert train["gflop_per_step"] / record["batch"] > 2 * predict["gflop_per_step"] / predict["images_per_step"]
    assert [r["predict"]["images_per_step"] for r in report["records"]] == [1, 2]   # 3D: two windows per call
    assert out.with_suffix(".md").read_text().count("| tiny,") == 2


def test_cpu_attention_is_counted():
    """Without the CPU kernel's formula the tiny preset's attention would count as zero FLOPs."""
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(REPO))
    from benchmarks.flops import count_flops, register_cpu_attention_flops

    register_cpu_attention_flops()
    q = torch.randn(1, 2, 64, 16)
    assert count_flops(lambda: F.scaled_dot_product_attention(q, q, q)) == 2 * (2 * 2 * 64 * 64 * 16)
