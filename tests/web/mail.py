"""The mailbox pages' world: personal mailboxes for three professionals of the served region
(the demo's médecin traitant and two others) and a citizen mailbox for the demo's patient,
created as `socle demo`'s provisioning would; and the walk of writing a message on the page."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from socle.config import mail_domain
from socle.messaging import mailboxes
from socle.messaging.publish import queue_publish

from .pro import ProWorld, fhir
from .site import Site

IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"


@dataclass
class MailWorld:
    pros: list[dict[str, str]]  # rpps, practitioner, address (family): the doctor first
    patient_address: str
    gp_address: str  # the patient's médecin traitant's (one of their care team)


def mail_world(site: Site, world: ProWorld) -> MailWorld:
    doctor = world.doctor
    pros = [{"rpps": doctor["rpps"], "practitioner": doctor["practitioner"]}]
    for entry in fhir(site, "/Practitioner", _count="50")["entry"]:
        resource = entry["resource"]
        rpps = next(
            (
                str(i["value"])[1:]
                for i in resource.get("identifier", [])
                if i.get("system") == IDNAT_PS and str(i.get("value", "")).startswith("8")
            ),
            None,
        )
        if rpps and resource["id"] != doctor["practitioner"] and len(pros) < 3:
            family = str((resource.get("name") or [{}])[0].get("family") or "")
            pros.append({"rpps": rpps, "practitioner": resource["id"], "family": family})
    me = fhir(site, f"/Patient/{site.patient.id}")
    gp = str(me["generalPractitioner"][0]["reference"]).removeprefix("Practitioner/")
    gp_rpps = next(
        str(i["value"])[1:]
        for i in fhir(site, f"/Practitioner/{gp}").get("identifier", [])
        if i.get("system") == IDNAT_PS
    )
    domain = mail_domain()
    patient_address = f"patient-{site.patient.id}@{mailboxes.citizen_domain(domain)}".lower()
    with site.connect() as conn:
        for p in pros:
            p["address"] = f"{p['rpps']}@{domain}"
            mailboxes.create(
                conn, p["address"], "PER", f"Practitioner/{p['practitioner']}", identifier=p["rpps"]
            )
        mailboxes.create(conn, patient_address, "PAT", f"Patient/{site.patient.id}")
        gp_address = f"{gp_rpps}@{domain}"
        mailboxes.create(conn, gp_address, "PER", f"Practitioner/{gp}", identifier=gp_rpps)
        queue_publish(conn)  # the personal mailboxes into the directory, as provisioning does
    return MailWorld(pros, patient_address, gp_address)


def write(
    http: httpx.Client,
    to: str,
    subject: str,
    text: str,
    attachment: tuple[str, bytes, str] | None = None,
    reply: str = "",
) -> httpx.Response:
    """GET the form (its CSRF token), then POST it as a browser would (multipart)."""
    form = http.get("/messagerie/ecrire", params={"reponse": reply} if reply else None)
    assert form.status_code == 200, form.text
    data = {**form_fields(form.text), "destinataire": to, "objet": subject, "texte": text}
    files = {"fichier": attachment or ("", b"", "application/octet-stream")}
    return http.post("/messagerie/ecrire", data=data, files=files)


def form_fields(page: str) -> dict[str, str]:
    """The hidden fields of the writing form (not the header's logout form)."""
    found = re.search(r'<form method="post" action="/messagerie/ecrire".*?</form>', page, re.S)
    assert found, page
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', found.group(0))
    return {name: html.unescape(value) for name, value in fields}


def poll(check: Callable[[], Any], seconds: float = 60) -> Any:
    """Until `check` gives something (delivery is a job): no fixed sleep in an assertion."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)
