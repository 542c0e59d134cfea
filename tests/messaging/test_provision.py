"""Mailboxes for the demo region: a personal one per professional with an RPPS, a citizen one
per qualified patient, none for the others."""

from __future__ import annotations

from socle.identity.status import identity_status
from socle.messaging.provision import mailbox_for
from socle.region.generate import iter_blocks


def test_region_professionals_and_qualified_patients_get_mailboxes() -> None:
    resources = [r for block in iter_blocks(40, 3) for r in block]
    found = {
        (r["resourceType"], r["id"]): mailbox_for(r["resourceType"], r["id"], r, "mss.test")
        for r in resources
        if r["resourceType"] in ("Practitioner", "Patient")
    }
    pros = [v for (t, _), v in found.items() if t == "Practitioner" and v]
    assert pros and all(v[1] == "PER" and v[0] == f"{v[3]}@mss.test" for v in pros)
    patients = {r["id"]: r for r in resources if r["resourceType"] == "Patient"}
    for (rtype, rid), mailbox in found.items():
        if rtype != "Patient":
            continue
        qualified = identity_status(patients[rid]) == "QUAL"
        assert (mailbox is not None) == qualified
        if mailbox:
            # Corsican NIRs (2A, 2B): addresses are kept in lower case
            assert (
                mailbox[0] == f"{mailbox[3].lower()}@patient.mss.test"
                and mailbox[2] == f"Patient/{rid}"
            )
    assert any(v for (t, _), v in found.items() if t == "Patient")
