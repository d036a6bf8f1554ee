"""Run ids sort by creation, also for runs made within the same millisecond."""
from __future__ import annotations

import os

from stepwise.runs.ids import new_run_id


def test_ids_made_in_a_burst_sort_in_the_order_they_were_made():
    ids = [new_run_id() for _ in range(2000)]  # far more than one per millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_starts_its_own_sequence():
    from stepwise.runs import ids

    read, write = os.pipe()
    new_run_id()
    assert ids._last != (0, 0)
    pid = os.fork()
    if pid == 0:  # the child: report what its next id would continue from, and leave at once
        os.write(write, repr(ids._last).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    # Continuing the parent's sequence, both would make the same next id within a millisecond.
    assert os.read(read, 64).decode() == "(0, 0)"
