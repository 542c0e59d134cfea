"""Ready-made logins of `socle demo`, chosen in the generated region (deterministic: same
patients and seed, same people) and printed in its banner.

* a médecin traitant (the GP with the most patients among the first ones), who sees his patients;
* a nurse of a care team;
* a hospital's system client (``client_credentials`` + ``private_key_jwt``, the key in the data
  dir), the hospital of a current stay;
* an identity referent (a doctor of that hospital, with the ``socle/identitovigilance`` scope);
* a patient with a password and a TOTP secret (an account of the authorisation server);
* a parent of a child (the child's legal representative), with an account of his own
  (representative_accounts: the patient login page, login ``rep-parent.demo``).

The patient's and the parent's TOTP secrets are kept in ``<data dir>/demo-logins.json`` (0600)
so that a restarted demo prints the same ones; an account is only created when that file does
not name it yet.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

from ..auth.representation import represented_patient
from ..config import Settings
from ..synthetic import is_generated_duplicate
from .generate import iter_blocks

LOGINS_FILE = "demo-logins.json"
HOSPITAL_CLIENT = "socle-demo-hospital"
PATIENT_LOGIN = "patient.demo"
PARENT_LOGIN = "rep-parent.demo"  # a representative's login begins with rep-
PATIENT_PASSWORD = "Corse-demo-2025"  # noqa: S105 - a printed demo password, on purpose
OPERATOR_LOGIN = "exploitation.demo"  # the demo's staff account (the operators' pages)
OPERATOR_NAME = "Équipe d'exploitation (démonstration)"
IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
NURSE = "60"  # TRE_G15 infirmier
SCAN = 200  # patients looked at: enough to find each kind, cheap to generate


def _ref_id(ref: dict[str, Any] | None) -> str:
    return str((ref or {}).get("reference", "")).split("/", 1)[-1]


def choose(patients: int, seed: int) -> dict[str, Any]:
    """The demo's people, from the first patients of the region (no database needed)."""
    blocks = iter_blocks(patients, seed)
    structures = next(blocks)
    staff: dict[str, dict[str, Any]] = {}
    for r in structures:
        if r["resourceType"] == "Practitioner":
            name = r["name"][0]
            staff[r["id"]] = {
                "practitioner": r["id"],
                "rpps": next(i["value"] for i in r["identifier"] if i["system"] == IDNAT_PS)[1:],
                "name": " ".join([*name.get("prefix", []), *name["given"], name["family"]]),
            }
    org_names = {r["id"]: r["name"] for r in structures if r["resourceType"] == "Organization"}
    doctors_of_org: dict[str, list[str]] = {}
    for r in structures:
        if r["resourceType"] == "PractitionerRole":
            codes = [c["code"] for cc in r.get("code", []) for c in cc["coding"]]
            if "10" in codes:
                doctors_of_org.setdefault(_ref_id(r["organization"]), []).append(
                    _ref_id(r["practitioner"])
                )
    gps: Counter[str] = Counter()
    nurse = hospital = patient = parent = None
    for index, block in enumerate(blocks):
        if index >= SCAN:
            break
        for r in block:
            kind = r["resourceType"]
            if kind == "Patient" and not is_generated_duplicate(r):
                gps[_ref_id(r["generalPractitioner"][0])] += 1
                if patient is None and r["birthDate"] < "2000" and r.get("generalPractitioner"):
                    patient = r
            elif kind == "CareTeam" and nurse is None:
                for p in r["participant"]:
                    if any(c["code"] == NURSE for role in p["role"] for c in role["coding"]):
                        nurse = (_ref_id(p["member"]), _ref_id(r["subject"]))
            elif kind == "Encounter" and r["status"] == "in-progress" and hospital is None:
                hospital = (_ref_id(r["serviceProvider"]), _ref_id(r["subject"]))
            elif kind == "RelatedPerson" and parent is None and represented_patient(r):
                parent = r
    out: dict[str, Any] = {"patients": patients, "seed": seed}
    if gps:
        doctor = gps.most_common(1)[0][0]
        out["doctor"] = {**staff[doctor], "patients": gps[doctor]}
    if nurse:
        out["nurse"] = {**staff[nurse[0]], "patient": nurse[1]}
    if hospital:
        org, in_stay = hospital
        out["hospital"] = {"organization": org, "name": org_names[org], "client": HOSPITAL_CLIENT}
        referent = doctors_of_org.get(org, [])
        if referent:
            out["referent"] = {**staff[referent[-1]], "organization": org}
    if patient:
        name = patient["name"][0]
        out["patient"] = {
            "id": patient["id"],
            "name": f"{' '.join(name['given'])} {name['family']}",
            "login": PATIENT_LOGIN,
            "password": PATIENT_PASSWORD,
        }
    if parent:
        name = parent["name"][0]
        out["parent"] = {
            "related_person": parent["id"],
            "child": _ref_id(parent["patient"]),
            "name": f"{' '.join(name['given'])} {name['family']}",
        }
    return out


def prepare(
    conn: psycopg.Connection, settings: Settings, patients: int, seed: int
) -> dict[str, Any]:
    """Choose the logins, create what they need (the patient's account, the hospital's client)
    and return them with the patient's TOTP secret. Idempotent."""
    from ..auth.keys import generate_signing_key, load_private_key, public_jwks
    from ..auth.server.accounts import create_patient_account
    from ..auth.server.clients import register_client
    from ..auth.server.secrets_store import _create_once

    logins = choose(patients, seed)
    path = settings.data_dir / LOGINS_FILE
    previous = _read(path)
    if "hospital" in logins:
        key_path = settings.data_dir / "keys" / "demo-hospital.jwk"
        _create_once(key_path, json.dumps(generate_signing_key("ES256").as_dict(private=True)))
        register_client(
            conn,
            HOSPITAL_CLIENT,
            public=False,
            scopes="system/*.cruds",
            jwks=public_jwks(load_private_key(key_path)),
            role="system",
            organization=logins["hospital"]["organization"],
            name=f"Logiciel de {logins['hospital']['name']} (démonstration)",
            replace=True,
        )
        logins["hospital"]["private_key_file"] = str(key_path)
    if "patient" in logins:
        account = conn.execute(
            "SELECT 1 FROM patient_account WHERE patient_id = %s", (logins["patient"]["id"],)
        ).fetchone()
        known = previous.get("patient", {})
        if account and known.get("id") == logins["patient"]["id"] and known.get("totp_secret"):
            logins["patient"]["totp_secret"] = known["totp_secret"]
        else:
            logins["patient"]["totp_secret"] = create_patient_account(
                conn,
                logins["patient"]["id"],
                PATIENT_PASSWORD,
                login=PATIENT_LOGIN,
                settings=settings,
            )
    if "parent" in logins:
        known_parent = previous.get("parent", {})
        logins["parent"].update(_parent(conn, settings, logins["parent"], known_parent))
    logins["operator"] = _operator(conn, settings, previous.get("operator", {}))
    _write(path, logins)
    return logins


def _parent(
    conn: psycopg.Connection, settings: Settings, parent: dict[str, Any], known: dict[str, Any]
) -> dict[str, Any]:
    """The parent's representative account: kept with its TOTP secret if the logins file
    knows it, else made afresh."""
    from ..auth.server.representative_accounts import create_representative_account

    account = conn.execute(
        "SELECT 1 FROM representative_account WHERE related_person_id = %s AND login = %s",
        (parent["related_person"], PARENT_LOGIN),
    ).fetchone()
    secret = known.get("totp_secret") if account else None
    if not secret or known.get("related_person") != parent["related_person"]:
        _, secret = create_representative_account(
            conn,
            settings,
            parent["related_person"],
            parent["child"],
            PATIENT_PASSWORD,
            PARENT_LOGIN,
        )
    return {"login": PARENT_LOGIN, "password": PATIENT_PASSWORD, "totp_secret": secret}


def _operator(
    conn: psycopg.Connection, settings: Settings, known: dict[str, Any]
) -> dict[str, Any]:
    """The demo's staff account: kept with its TOTP secret if the logins file knows it, else
    made afresh."""
    from ..auth.server.operators import create_operator, remove_operator

    account = conn.execute(
        "SELECT 1 FROM operator_account WHERE login = %s", (OPERATOR_LOGIN,)
    ).fetchone()
    secret = known.get("totp_secret") if account else None
    if secret:  # a demo made before staff accounts had administrators
        conn.execute("UPDATE operator_account SET admin = true WHERE login = %s", (OPERATOR_LOGIN,))
    else:
        remove_operator(conn, OPERATOR_LOGIN)
        secret = create_operator(
            conn, OPERATOR_LOGIN, OPERATOR_NAME, PATIENT_PASSWORD, settings, admin=True
        )
    return {
        "login": OPERATOR_LOGIN,
        "name": OPERATOR_NAME,
        "password": PATIENT_PASSWORD,
        "totp_secret": secret,
    }


def referent_role(referent: dict[str, Any]) -> dict[str, Any]:
    """The PractitionerRole that makes the demo's referent a member of the identitovigilance
    cell (the directory is what the authorisation server reads at his login)."""
    from ..auth.server.directory import IDENTITY_REFERENT, ROLE_SYSTEM

    return {
        "resourceType": "PractitionerRole",
        "id": f"referent-{referent['practitioner']}",
        "active": True,
        "practitioner": {"reference": f"Practitioner/{referent['practitioner']}"},
        "organization": {"reference": f"Organization/{referent['organization']}"},
        "code": [
            {
                "coding": [
                    {
                        "system": ROLE_SYSTEM,
                        "code": IDENTITY_REFERENT,
                        "display": "Référent en identitovigilance",
                    }
                ]
            }
        ],
    }


def _read(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _write(path: Path, logins: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(logins, f, ensure_ascii=False, indent=1)
