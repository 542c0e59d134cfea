"""The inbox page's parts without a server: the way a task goes to « terminée » along the R4 task
state machine the coordination write rule enforces, and what a task item shows."""

from __future__ import annotations

from socle.coordination.rules import OPEN, TERMINAL, allowed_transition
from socle.portal.pro.inbox import due_of, steps_to_completed, task_view


def test_every_open_task_reaches_completed_by_allowed_steps_and_closed_ones_do_not():
    for status in OPEN:
        steps = steps_to_completed(status)
        assert steps and steps[-1] == "completed", status
        for old, new in zip([status, *steps], steps, strict=False):
            assert allowed_transition(old, new), (old, new)
        assert not {"cancelled", "rejected", "failed"} & set(steps)
    for status in TERMINAL:
        assert steps_to_completed(status) == []
    assert steps_to_completed("requested") == ["accepted", "in-progress", "completed"]


def test_a_task_item_says_when_it_is_due_late_and_whether_he_may_complete_it():
    mine = frozenset({"PractitionerRole/r1", "Practitioner/p1"})
    task = {
        "id": "t1",
        "status": "requested",
        "for": {"reference": "Patient/p9"},
        "owner": {"reference": "PractitionerRole/r1"},
        "restriction": {"period": {"end": "2026-12-03"}},
    }
    item = task_view(task, mine, "2026-12-04")
    assert item["overdue"] and item["may_complete"] and item["pid"] == "p9"
    assert not task_view(task, mine, "2026-12-03")["overdue"]  # due today: not late yet
    asked = {
        **task,
        "owner": {"reference": "Organization/o1"},
        "requester": {"reference": "Practitioner/p1"},
    }
    assert not task_view(asked, mine, "2026-12-04")["may_complete"]
    done = {**task, "status": "completed"}
    assert not task_view(done, mine, "2026-12-04")["may_complete"]
    assert due_of({"executionPeriod": {"end": "2027-01-01"}}) == "2027-01-01"
    assert due_of({}) == ""
