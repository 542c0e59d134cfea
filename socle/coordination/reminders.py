"""Reminders of tasks due: a periodic job of the coordination service (``coordination.reminders``,
every ``SOCLE_TASK_REMINDER_SECONDS``, 3600 by default, 0 turns it off) that finds the open
Tasks whose due date (``restriction.period.end``, else ``executionPeriod.end``) is tomorrow or
past and sends their owner an e-mail — once per task and due date.

* **Who.** The owner, a Practitioner or a PractitionerRole of the directory, at the e-mail
  address of the directory (the role's ``telecom`` of system ``email``, else his Practitioner's).
  A task owned by an organisation, a patient or an owner without an address gets no mail.
* **What.** Id-only, as the « Être prévenu » notifications: the task's reference and a link to
  the inbox page — no patient, no title, no health data; he signs in to see it.
* **Once.** ``coordination_reminder`` (task id, due date) is claimed in its own committed
  transaction before the mail leaves: a run again (another worker, after a crash) finds it
  and sends nothing. A relay that refuses for now (4xx, unreachable) gives the claim back, so
  the next run tries again; a crash between the claim and the relay's answer leaves the claim
  with no ``sent_at`` (logged): the reminder may be lost then, never sent twice.
* **Audit.** The tasks are read by the platform; each run that read some writes one audit
  record naming every patient whose tasks it read (agent: the platform's reminders).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from ..auth.audit_chain import AccessRecord, build_audit_event, event_text
from ..auth.audit_store import AuditRow, write_events
from ..config import Settings
from ..fhir.engine import Engine
from ..fhir.json import decode
from ..fhir.outcome import FhirError
from ..mail.relay import RelayError, send_async
from ..workers import JobContext, JobKind
from .codes import COORDINATION
from .rules import OPEN

log = logging.getLogger("socle.coordination")
JOB_NAME = "coordination.reminders"
EVERY_ENV = "SOCLE_TASK_REMINDER_SECONDS"
BATCH = 500
DUE = "COALESCE(r.content->'restriction'->'period'->>'end', r.content->'executionPeriod'->>'end')"
AGENT = "Socle (rappels des tâches de coordination)"

# open tasks due by tomorrow, with an owner of the directory, not reminded for that due date
_DUE_TASKS = (
    f"SELECT r.id, r.compartment, {DUE} AS due, r.content->'owner'->>'reference' AS owner "
    "FROM resource r WHERE r.rtype = 'Task' AND NOT r.deleted "
    "AND r.content->>'status' = ANY(%s) "
    f"AND {DUE} IS NOT NULL AND left({DUE}, 10) <= %s "
    "AND (r.content->'owner'->>'reference' LIKE 'Practitioner/%%' "
    "OR r.content->'owner'->>'reference' LIKE 'PractitionerRole/%%') "
    "AND NOT EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid AND t.rtype = 'Task' "
    "AND t.param = 'code' AND t.system = %s AND t.code = 'invitation-cercle') "
    f"AND NOT EXISTS (SELECT 1 FROM coordination_reminder m WHERE m.task_id = r.id "
    f"AND m.due = {DUE}) ORDER BY r.rid LIMIT %s"
)


def every(settings: Settings) -> float:
    return settings.task_reminder_seconds  # 0: off


@dataclass(frozen=True)
class Due:
    task: str
    patient: str | None
    due: str
    owner: str


def reminder_text(task: str, due: str, today: str, link: str) -> str:
    """The mail's text: the task's id, whether it is late, a link — nothing of the patient."""
    when = "est en retard" if due[:10] < today else "arrive à échéance"
    return (
        "Bonjour,\n\nUne tâche de coordination qui vous est confiée "
        f"{when}. Connectez-vous pour la consulter :\n{link}\n\nTâche : {task}\n"
    )


async def _read(engine: Engine, ref: str) -> dict[str, Any] | None:
    rtype, _, rid = ref.partition("/")
    try:
        return decode((await engine.read(rtype, rid, engine.platform())).content or "{}")
    except FhirError:
        return None


def _email_of(resource: dict[str, Any] | None) -> str | None:
    for t in (resource or {}).get("telecom") or []:
        if isinstance(t, dict) and t.get("system") == "email" and t.get("value"):
            return str(t["value"])
    return None


async def address_of(engine: Engine, owner: str) -> str | None:
    """The owner's e-mail address in the directory (a role's, else its practitioner's)."""
    found = await _read(engine, owner)
    address = _email_of(found)
    if address is None and found is not None and owner.startswith("PractitionerRole/"):
        practitioner = str((found.get("practitioner") or {}).get("reference") or "")
        if practitioner.startswith("Practitioner/"):
            address = _email_of(await _read(engine, practitioner))
    return address


def _audit_row(items: list[Due]) -> AuditRow:
    patients = sorted({d.patient for d in items if d.patient})
    by_patient = {p: tuple(f"Task/{d.task}" for d in items if d.patient == p) for p in patients}
    record = AccessRecord(
        recorded=dt.datetime.now(dt.UTC),
        interaction="operation",
        action="R",
        agent_display=AGENT,
        patient=f"Patient/{patients[0]}" if patients else None,
        entities=by_patient[patients[0]] if patients else (),
        more_patients=tuple((f"Patient/{p}", by_patient[p]) for p in patients[1:]),
        others=tuple(f"Task/{d.task}" for d in items if not d.patient),
        operation=JOB_NAME,
        decision_reason="tasks due: their owners reminded",
    )
    event = build_audit_event(record)
    return AuditRow(
        event["id"], record.recorded, event["action"], "0", "operation", tuple(patients), (),
        event_text(event),
    )  # fmt: skip


async def _claim(engine: Engine, item: Due) -> bool:
    async with engine.pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO coordination_reminder (task_id, due, owner) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            (item.task, item.due, item.owner),
        )
        return cur.rowcount == 1


async def _settle(engine: Engine, item: Due, sent: bool) -> None:
    async with engine.pool.connection() as conn:
        if sent:
            await conn.execute(
                "UPDATE coordination_reminder SET sent_at = now() WHERE task_id = %s AND due = %s",
                (item.task, item.due),
            )
        else:  # given back: the next run tries again
            await conn.execute(
                "DELETE FROM coordination_reminder WHERE task_id = %s AND due = %s",
                (item.task, item.due),
            )


async def remind(engine: Engine, today: dt.date | None = None) -> int:
    """One pass: every task due by tomorrow whose owner was not reminded for that due date.
    Returns how many mails left."""
    today = today or dt.datetime.now(dt.UTC).date()
    tomorrow = (today + dt.timedelta(days=1)).isoformat()
    async with engine.pool.connection() as conn:
        cur = await conn.execute(_DUE_TASKS, (list(OPEN), tomorrow, COORDINATION, BATCH))
        items = [Due(str(r[0]), r[1], str(r[2]), str(r[3])) for r in await cur.fetchall()]
        if items:
            await write_events(conn, [_audit_row(items)])
    link = engine.settings.fhir_audience.removesuffix("/fhir") + "/pro/coordination/boite"
    sent = 0
    for item in items:
        address = await address_of(engine, item.owner)
        if address is None:
            continue  # nobody to write to; looked at again next run (he may add one)
        if not await _claim(engine, item):
            continue  # another run has it
        message = EmailMessage()
        message["To"] = address
        message["Subject"] = "Socle : une tâche de coordination arrive à échéance"
        message.set_content(reminder_text(f"Task/{item.task}", item.due, today.isoformat(), link))
        try:
            await send_async(message)
        except RelayError as exc:
            if exc.permanent:
                # refused for good: the claim stays (not tried again), without sent_at
                log.warning("task reminder for Task/%s refused: %s", item.task, exc)
                continue
            await _settle(engine, item, sent=False)
            raise
        await _settle(engine, item, sent=True)
        sent += 1
    return sent


async def reminders_job(job: JobContext) -> None:
    sent = await remind(job.runtime.engine)
    if sent:
        await job.progress(sent, note="task reminders sent")


JOB = JobKind(JOB_NAME, reminders_job, singleton=True, every=every)
