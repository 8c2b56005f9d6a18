"""One poller for every Domino job an apply waits on.

Waiting on each job with its own `GET /v4/jobs/{jobId}` costs one request per job per poll: 200 running jobs
polled every 2 s are 100 requests a second, which is how a rate limit is met. Here one thread asks once per poll
for the project's most recent jobs (`GET /v4/jobs?projectId=...`, python-domino's `jobs_list`, newest first) and
hands each waiting job the status it finds there; only a job missing from that page (more jobs started since,
or an answer without `statuses`) is asked about on its own. Polls back off with the age of the youngest job
waited on (2 % of it, between `poll_interval` and `max_poll_interval`), so a job is seen finished within a few
percent of its run time, and a long apply does not hammer the API. Rate limits (429 with Retry-After) and
transient errors are retried by the client's urllib3 `Retry`; an error that outlives them is given to every
waiter, which decides as it did with its own polls (`wait` raises it).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from providers.domino.client import DominoClient
from providers.domino.models import Job
from vocab.errors import FlowsError

AGE_SHARE = 0.02       # poll interval as a share of the youngest waited-on job's age
PAGE_MIN, PAGE_MAX = 50, 500


@dataclass
class _Waiter:
    job_id: str
    since: float
    on_status: Callable[[Job], None] | None
    changed: threading.Event = field(default_factory=threading.Event)
    last: Job | None = None
    error: FlowsError | None = None


class JobWatcher:
    def __init__(self, client: DominoClient, poll_interval: float, max_poll_interval: float) -> None:
        self.client = client
        self.poll_interval = poll_interval
        self.max_poll_interval = max(max_poll_interval, poll_interval)
        self._waiters: dict[str, list[_Waiter]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.polls = 0            # list requests made (for the benchmark and tests)
        self.single_polls = 0     # per-job requests made for jobs the list did not answer for

    def wait(self, job_id: str, *, timeout: float | None = None, cancel: threading.Event | None = None,
             on_status: Callable[[Job], None] | None = None) -> Job:
        """As `DominoClient.wait_for_job`: the last status seen when the job completes, `timeout` seconds pass
        or `cancel` is set (check `.is_completed`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        w = _Waiter(job_id, time.monotonic(), on_status)
        with self._lock:
            self._waiters.setdefault(job_id, []).append(w)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="domino-job-watcher", daemon=True)
                self._thread.start()
        self._wake.set()  # a new job: poll soon
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                step = 0.2 if remaining is None else min(0.2, remaining)  # cancel is checked this often
                if w.changed.wait(step):
                    w.changed.clear()
                    if w.error is not None:
                        raise w.error
                    if w.last is not None and w.last.is_completed:
                        return w.last
                if cancel is not None and cancel.is_set():
                    break
        finally:
            with self._lock:
                mine = self._waiters.get(job_id, [])
                if w in mine:
                    mine.remove(w)
                if not mine:
                    self._waiters.pop(job_id, None)
        return w.last if w.last is not None else self.client.job_status(job_id)

    def _interval(self) -> float:
        with self._lock:
            starts = [w.since for ws in self._waiters.values() for w in ws]
        if not starts:
            return self.poll_interval
        age = time.monotonic() - max(starts)
        return min(self.max_poll_interval, max(self.poll_interval, AGE_SHARE * age))

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._waiters:
                    self._thread = None
                    return
                ids = list(self._waiters)
            try:
                self._poll(ids)
            except FlowsError as e:
                self._tell_all(ids, error=e)
            self._wake.clear()
            self._wake.wait(self._interval())

    def _poll(self, ids: list[str]) -> None:
        self.polls += 1
        size = min(PAGE_MAX, max(PAGE_MIN, 2 * len(ids)))
        listed = (s.as_job() for s in self.client.list_jobs(page_size=size))
        found = {j.id: j for j in listed if j is not None}
        for job_id in ids:
            job = found.get(job_id)
            if job is None:
                self.single_polls += 1
                job = self.client.job_status(job_id)
            self._tell(job_id, job)

    def _tell(self, job_id: str, job: Job) -> None:
        with self._lock:
            waiters = list(self._waiters.get(job_id, []))
        for w in waiters:
            if w.on_status is not None:
                w.on_status(job)
            w.last = job
            w.changed.set()

    def _tell_all(self, ids: list[str], error: FlowsError) -> None:
        with self._lock:
            waiters = [w for i in ids for w in self._waiters.get(i, [])]
        for w in waiters:
            w.error = error
            w.changed.set()
