"""The background process, tested with a real child (fake_diffusionseg.py)."""

import os
import sys
import time
from pathlib import Path

import pytest

from DiffusionSegModuleLib.process import BackendProcess, error_message
from DiffusionSegModuleLib.progress import ProgressState, format_duration, parse_line

HERE = Path(__file__).resolve().parent


def make_runner(grace=5.0):
    return BackendProcess(sys.executable, backend_dir=HERE, module="fake_diffusionseg", grace_seconds=grace)


def test_parse_line_events_and_logs():
    event = parse_line('{"event": "progress", "stage": "finetune", "step": 3, "total": 10, "loss": 0.5}\n')
    assert event.kind == "progress" and event.data["step"] == 3
    assert parse_line("plain text\n").kind == "log"
    assert parse_line("{not json\n").kind == "log"
    assert parse_line('{"no_event_key": 1}').kind == "log"
    assert parse_line("   \n") is None
    assert parse_line('{"event": "done"}', stream="stderr").kind == "log"  # only stdout carries events


def test_progress_summary():
    state = ProgressState()
    for line in ['{"event": "start", "stage": "finetune", "total": 2000, "out": "/m"}',
                 '{"event": "progress", "stage": "finetune", "step": 120, "total": 2000, "loss": 0.31, "eta_s": 95}']:
        state.update(parse_line(line))
    assert state.fraction == pytest.approx(0.06)
    assert state.summary() == "Fine-tuning: step 120 / 2000, loss 0.3100, 1 min 35 s left"
    assert format_duration(7300) == "2 h 01 min"


def test_successful_run_reports_progress_and_resets(tmp_path):
    runner = make_runner()
    command = runner.start(["finetune", "--out", str(tmp_path), "--iterations", "4"])
    assert command[:4] == [sys.executable, "-u", "-m", "fake_diffusionseg"]
    assert command[-2:] == ["--progress", "json"]
    assert runner.running
    with pytest.raises(RuntimeError, match="already in progress"):
        runner.start(["finetune"])
    seen = []
    result = runner.wait(timeout=30, on_events=seen.extend)
    assert result is not None and result.ok and result.returncode == 0 and result.message == ""
    kinds = [e.kind for e in seen if e.kind != "log"]  # stderr logs interleave freely
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("progress") == 4
    logs = {e.data["stream"]: e.data["text"] for e in seen if e.kind == "log"}
    assert logs == {"stdout": "this is a log line on stdout that is not JSON", "stderr": "starting finetune"}
    assert result.state.step == 4 and result.state.total == 4 and result.state.done
    assert result.state.last_checkpoint == str(tmp_path)
    assert not runner.running
    # No stale state: a second run starts from scratch.
    runner.start(["finetune", "--out", str(tmp_path), "--iterations", "1"])
    assert runner.state.step == 0 and runner.result is None
    assert runner.wait(timeout=30).ok


def test_user_error_line_becomes_the_message(tmp_path):
    runner = make_runner()
    runner.start(["finetune", "--out", str(tmp_path), "--iterations", "5", "--fail-user"])
    result = runner.wait(timeout=30)
    assert result.status == "failed" and result.returncode == 2
    assert result.message == ("labels/case_001.seg.nrrd: segment 'liver' is empty. "
                              "Fix: paint it or delete the file.")
    assert not runner.running


def test_crash_reports_last_traceback_line(tmp_path):
    runner = make_runner()
    runner.start(["finetune", "--out", str(tmp_path), "--crash"])
    result = runner.wait(timeout=30)
    assert result.status == "failed" and result.returncode == 1
    assert result.message == "RuntimeError: simulated crash in the training loop"
    assert any(line.startswith("Traceback") for line in result.stderr_tail)


def test_cancel_mid_run_keeps_checkpoint_and_resets(tmp_path):
    runner = make_runner()
    runner.start(["finetune", "--out", str(tmp_path), "--iterations", "1000", "--delay", "0.02"])
    deadline = time.monotonic() + 30
    while runner.state.last_checkpoint == "" and time.monotonic() < deadline:
        runner.poll()
        time.sleep(0.02)
    assert runner.state.step >= 2
    runner.cancel()
    result = runner.wait(timeout=30)
    assert result.status == "cancelled" and result.returncode == 130
    assert "last checkpoint is kept" in result.message and str(tmp_path) in result.message
    assert result.state.step < 1000
    assert not runner.running and not runner.cancel_requested
    runner.start(["finetune", "--out", str(tmp_path), "--iterations", "1"])
    assert runner.wait(timeout=30).ok


@pytest.mark.skipif(sys.platform == "win32", reason="checks POSIX process groups")
def test_cancel_kills_the_whole_tree_even_if_sigterm_is_ignored(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    runner = make_runner(grace=0.5)
    runner.start(["finetune", "--iterations", "1000", "--delay", "0.05", "--ignore-sigterm",
                  "--spawn-grandchild", str(pidfile)])
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
        runner.poll()
        time.sleep(0.02)
    grandchild = int(pidfile.read_text())
    runner.cancel()
    result = runner.wait(timeout=30)
    assert result.status == "cancelled" and result.returncode == -9
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, parent gone) counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def test_missing_interpreter_is_a_clear_error():
    runner = BackendProcess("/nonexistent/PythonSlicer")
    with pytest.raises(RuntimeError, match="Could not start the DiffusionSeg backend"):
        runner.start(["predict"])
    assert not runner.running


def test_error_message_fallbacks():
    assert error_message(2, ["x", "error: bad. Fix: good."]) == "bad. Fix: good."
    assert error_message(1, [], "from event") == "from event"
    assert error_message(1, []) == "The backend failed with exit code 1."
    assert error_message(-9, []) == "The backend was stopped by signal 9."
