"""Window-level parallelism (issue 16): results in order, thread count restored, errors surface."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from DiffusionSegLib.predict.parallel import ordered_map, window_workers


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_results_come_in_input_order_from_several_threads(two_threads):
    seen_threads, seen_counts = set(), set()

    def slow_square(x):
        time.sleep(0.02 * (5 - x))   # early items finish last
        seen_threads.add(threading.get_ident())
        seen_counts.add(torch.get_num_threads())
        return x * x

    assert list(ordered_map(slow_square, range(5), workers=2)) == [(x, x * x) for x in range(5)]
    assert len(seen_threads) == 2 and threading.get_ident() not in seen_threads
    assert seen_counts == {1}                 # each worker one intra-op thread...
    assert torch.get_num_threads() == 2       # ...and the process's count restored after


def test_abandoned_or_failing_iteration_restores_the_thread_count(two_threads):
    it = ordered_map(lambda x: x, range(10), workers=2)
    next(it)
    assert torch.get_num_threads() == 1
    it.close()
    assert torch.get_num_threads() == 2

    def fail_on_three(x):
        if x == 3:
            raise ValueError("window 3")
        return x

    with pytest.raises(ValueError, match="window 3"):
        list(ordered_map(fail_on_three, range(10), workers=2))
    assert torch.get_num_threads() == 2


def test_one_worker_is_a_plain_loop_on_the_calling_thread(two_threads):
    threads = []
    assert list(ordered_map(lambda x: threads.append(threading.get_ident()) or -x, [1, 2], workers=1)) == [(1, -1), (2, -2)]
    assert set(threads) == {threading.get_ident()}


def test_workers_follow_the_cpu_threads_and_stay_one_on_a_gpu(two_threads):
    assert window_workers(torch.device("cpu")) == 2
    assert window_workers(torch.device("cuda")) == 1   # only the device type is read: no GPU needed
