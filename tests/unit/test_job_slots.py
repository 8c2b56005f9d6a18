"""Job slots: granted in the order the walk handed out the tickets, a freed slot straight to the next in line."""
from __future__ import annotations

import random
import threading

from reconcile.apply import JobSlots
from tests.fixtures.waiting import wait_until


def _acquire_in_thread(slots: JobSlots, ticket: int, granted: list[int]) -> threading.Thread:
    def run() -> None:
        slots.acquire(ticket)
        granted.append(ticket)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_freed_slot_goes_to_the_next_ticket_in_line_and_to_no_other() -> None:
    slots = JobSlots(1)
    first, second, third = slots.ticket(), slots.ticket(), slots.ticket()
    slots.acquire(first)
    granted: list[int] = []
    later = _acquire_in_thread(slots, third, granted)  # asks first, but is behind `second` in line
    sooner = _acquire_in_thread(slots, second, granted)
    wait_until(lambda: len(slots._waiting) == 2, 10, what="both workers to wait for a slot")
    slots.release()
    sooner.join(10)
    assert granted == [second] and slots.free == 0 and later.is_alive()
    slots.release()
    later.join(10)
    assert granted == [second, third] and slots.free == 0


def test_a_ticket_that_has_not_asked_yet_keeps_its_place_and_a_dropped_one_passes_it_on() -> None:
    slots = JobSlots(1)
    first, second, third = slots.ticket(), slots.ticket(), slots.ticket()
    slots.acquire(first)
    granted: list[int] = []
    waiter = _acquire_in_thread(slots, third, granted)
    wait_until(lambda: third in slots._waiting, 10, what="the third ticket to wait")
    slots.release()
    assert slots.free == 1 and granted == [] and waiter.is_alive()  # `second` is next, though it has not asked
    slots.drop(second)  # (a cache hit: it needs no slot)
    waiter.join(10)
    assert granted == [third] and slots.free == 0


def test_with_free_slots_a_ticket_at_the_head_takes_one_and_the_next_waiting_one_gets_the_other() -> None:
    slots = JobSlots(2)
    first, second = slots.ticket(), slots.ticket()
    granted: list[int] = []
    waiter = _acquire_in_thread(slots, second, granted)
    wait_until(lambda: second in slots._waiting, 10, what="the second ticket to wait behind the first")
    slots.acquire(first)  # the head takes a slot; the one still free goes on to the ticket waiting behind
    waiter.join(10)
    assert granted == [second] and slots.free == 0


def test_many_workers_asking_in_any_order_are_granted_one_slot_at_a_time_in_ticket_order() -> None:
    slots = JobSlots(1)
    tickets = [slots.ticket() for _ in range(200)]
    order: list[int] = []
    lock = threading.Lock()
    shuffled = tickets[:]
    random.Random(7).shuffle(shuffled)

    def run(ticket: int) -> None:
        slots.acquire(ticket)
        with lock:
            order.append(ticket)
        slots.release()

    threads = [threading.Thread(target=run, args=(t,), daemon=True) for t in shuffled]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a worker never got its slot"
    assert order == tickets and slots.free == 1
