"""chroma.api.behind: derived updates run after their write returns, in order, at most
MAX_PENDING queued, and a fork that loses queued steps says so."""

from __future__ import annotations

import os
import threading

from chroma.api.behind import MAX_PENDING, Behind


def test_steps_run_in_order_and_settle_waits_for_all():
    behind, ran = Behind(), []
    gate = threading.Event()
    behind.submit(gate.wait)
    behind.submit(lambda: ran.append(0))
    assert ran == []  # queued behind the gate
    gate.set()
    for i in range(1, 5):
        behind.submit(lambda i=i: ran.append(i))
    assert behind.settle() is True
    assert ran == [0, 1, 2, 3, 4]
    behind.close()


def test_a_submit_beyond_the_bound_waits_for_the_oldest_step():
    behind = Behind()
    gates = [threading.Event() for _ in range(MAX_PENDING)]
    for gate in gates:
        behind.submit(gate.wait)
    returned = threading.Event()
    submitter = threading.Thread(target=lambda: (behind.submit(lambda: None), returned.set()))
    submitter.start()
    assert not returned.wait(0.3)  # MAX_PENDING steps pending: the next submit waits
    gates[0].set()
    assert returned.wait(5)
    for gate in gates[1:]:
        gate.set()
    submitter.join()
    assert behind.settle() is True
    behind.close()


def test_a_forked_child_reports_the_steps_it_lost():
    behind = Behind()
    gate = threading.Event()
    behind.submit(gate.wait)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread and its queued step are not here
        os.write(write, b"1" if behind.settle() is False and behind.settle() is True else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    gate.set()
    assert answer == b"1"
    assert behind.settle() is True
    behind.close()
