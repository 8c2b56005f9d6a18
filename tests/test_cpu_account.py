"""bench/cpu_account.py reads `perf script` output into core-seconds per part of the run; a small made-up
recording (the format perf prints) checks who each sample is given to. No test runs perf or asserts a time."""
from __future__ import annotations

import pytest

from bench.cpu_account import account

# pid 100: the measured tool (threads 100 and 101); 200: its launcher; 300: a job the launcher started, 301 a
# process of that job; 400: a process unrelated to the run; 0: an idle core.
RECORDING = """\
            perf     90/90     10.000: PERF_RECORD_FORK(100:100):(90:90)
       perf-exec     90/90      9.990: \n\
         swapper      0/0      10.001: \n\
          python    100/100    10.010: PERF_RECORD_COMM exec: python:100/100
          python    100/100    10.020: PERF_RECORD_FORK(100:101):(100:100)
          python    100/100    10.050: \n\
          python    100/101    10.060: \n\
          python    100/100    10.070: PERF_RECORD_FORK(200:200):(100:100)
          python    200/200    10.080: \n\
         swapper      0/0      10.090: \n\
          python    200/200    10.100: PERF_RECORD_FORK(300:300):(200:200)
            bash    300/300    10.110: \n\
            bash    300/300    10.115: PERF_RECORD_FORK(301:301):(300:300)
           cksum    301/301    10.120: \n\
         swapper      0/0      10.125: \n\
           cksum    301/301    10.130: \n\
          python    100/101    10.140: \n\
         swapper      0/0      10.150: \n\
      kworker/0:1   400/400    10.160: \n\
          python    100/100    10.170: \n\
         swapper      0/0      10.500: \n\
"""


def test_each_sample_goes_to_its_part_of_the_run() -> None:
    wall, seconds = account(RECORDING, root=100, hz=1000)
    assert wall == pytest.approx(0.120)  # the tool's first sample (10.050) to its last (10.170)
    assert seconds["own: main thread"] == pytest.approx(0.002)
    assert seconds["own: other threads"] == pytest.approx(0.002)
    assert seconds["starter"] == pytest.approx(0.001)
    assert seconds["jobs"] == pytest.approx(0.003)  # the job and what it started
    assert seconds["rest of the machine"] == pytest.approx(0.001)
    # idle inside the run only (not perf's own start at 10.001, nor after the tool ended at 10.500)
    assert seconds["idle"] == pytest.approx(0.003)
    assert seconds["idle before the first job"] == pytest.approx(0.001)
    assert seconds["idle among the jobs"] == pytest.approx(0.001)
    assert seconds["idle after the last job"] == pytest.approx(0.001)


def test_a_recording_without_the_tool_is_empty() -> None:
    assert account(RECORDING, root=999, hz=1000) == (0.0, {})


def test_without_perf_it_says_what_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.cpu_account as cpu_account

    monkeypatch.setattr(cpu_account.shutil, "which", lambda name: None)
    assert cpu_account.perf_problem() == "needs Linux perf (not found on PATH)"
