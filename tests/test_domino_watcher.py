"""The job watcher (providers/domino/watcher.py): one list request answers for many running jobs; a job the
list does not answer for is asked about on its own. Against the emulator over HTTP on 127.0.0.1."""
from __future__ import annotations

import threading

from providers.domino.client import DominoClient
from providers.domino.emulator import DominoEmulator
from providers.domino.models import Job, StartJobRequest
from providers.domino.watcher import JobWatcher


def wait_all(watcher: JobWatcher, ids: list[str]) -> dict[str, Job]:
    done: dict[str, Job] = {}

    def one(job_id: str) -> None:
        done[job_id] = watcher.wait(job_id, timeout=60)

    threads = [threading.Thread(target=one, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done


def start(client: DominoClient, n: int) -> list[str]:
    return [client.start_job(StartJobRequest(command_to_run=f"bash scripts/produce.sh {i}", title=f"flows: n{i}")).id
            for i in range(n)]


def test_one_list_request_answers_for_every_running_job(client: DominoClient, emulator: DominoEmulator) -> None:
    ids = start(client, 6)
    watcher = JobWatcher(client, poll_interval=0.05, max_poll_interval=0.2)
    done = wait_all(watcher, ids)
    assert all(done[i].is_completed and done[i].status == "Succeeded" for i in ids), done
    per_job = [r for r in emulator.calls("GET", "/v4/jobs/") if r.path.rstrip("/") != "/v4/jobs"]
    assert per_job == [] and watcher.single_polls == 0
    assert 1 <= watcher.polls == len(emulator.calls("GET", "/v4/jobs"))


def test_a_job_the_list_does_not_answer_for_is_asked_about_alone(client: DominoClient,
                                                                 emulator: DominoEmulator) -> None:
    ids = start(client, 2)
    # A list answer without statuses (what python-domino's jobs_list shape does not promise).
    emulator.override("GET", r"^/v4/jobs$", 200, {"jobs": [{"id": i} for i in ids]})
    watcher = JobWatcher(client, poll_interval=0.05, max_poll_interval=0.2)
    done = wait_all(watcher, ids)
    assert all(done[i].status == "Succeeded" for i in ids)
    assert watcher.single_polls >= 2
    assert {r.path for r in emulator.calls("GET", "/v4/jobs/")} >= {f"/v4/jobs/{i}" for i in ids}


def test_cancel_and_timeout_return_the_last_status(client: DominoClient) -> None:
    job = client.start_job(StartJobRequest(command_to_run="echo started; sleep 600", title="flows: slow"))
    watcher = JobWatcher(client, poll_interval=0.05, max_poll_interval=0.2)
    assert not watcher.wait(job.id, timeout=0.3).is_completed
    cancel = threading.Event()
    cancel.set()
    assert not watcher.wait(job.id, cancel=cancel).is_completed
    client.stop_job(job.id)
    assert watcher.wait(job.id, timeout=30).status == "Stopped"
