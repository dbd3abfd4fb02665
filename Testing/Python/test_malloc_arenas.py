"""The CLI asks glibc for one malloc arena (cli/malloc_arenas.py); elsewhere it does nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from DiffusionSegLib.cli import malloc_arenas


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_one_arena_is_set_on_linux():
    assert malloc_arenas.use_one_malloc_arena() is True


def test_nothing_is_done_elsewhere(monkeypatch):
    monkeypatch.setattr(malloc_arenas.sys, "platform", "darwin")
    assert malloc_arenas.use_one_malloc_arena() is False


def test_the_command_line_sets_it_before_parsing(monkeypatch):
    """main() calls it first thing, so no torch thread has an arena of its own yet."""
    from DiffusionSegLib.cli import main as cli

    calls = []

    def parser_stopped():
        calls.append("parser")
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "use_one_malloc_arena", lambda: calls.append("arena"))
    monkeypatch.setattr(cli, "build_parser", parser_stopped)
    assert cli.main(["predict"]) == 130 and calls == ["arena", "parser"]


def test_a_process_with_one_arena_runs_threads():
    code = ("from DiffusionSegLib.cli.malloc_arenas import use_one_malloc_arena as one; assert one()\n"
            "import threading, numpy as np\n"
            "def work(): [np.ones(1 << 20) for _ in range(50)]\n"
            "ts = [threading.Thread(target=work) for _ in range(4)]; [t.start() for t in ts]; [t.join() for t in ts]\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
