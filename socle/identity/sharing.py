"""When an identity may be referenced by its INS: the enforcement point and the write rule.

* `may_reference_by_ins(patient)` is the one question other services (the shared record, the
  document services) ask before referencing health data with the matricule INS: QUAL only
  (RNIV; fr-identity §1.7). Strictness per deployment: ``SOCLE_INS_SHARING``:

  - ``strict`` (default): QUAL, active, not merged away, no comment that withdraws trust (DOUT,
    FICT, DESA, USUR, INVA, DOUA, COLV), exactly one INS with a valid NIR key;
  - ``status``: QUAL is enough (the status alone).

* `ins_write_rule(resource, where)` is an engine validator: it refuses (422, rule
  ``INS-QUAL-ONLY``) a Patient that carries an INS identifier (``use`` other than ``old``)
  without being QUAL, so the INS is never exposed by a non-qualified record.
  ``SOCLE_INS_WRITE_RULE``:

  - ``declared`` (default): refused when the Patient *declares* a status (reliability
    extension) other than QUAL; a Patient with no reliability extension is left to the
    fr-core-patient-ins profile check (which refuses it too when the profile is claimed);
  - ``strict``: refused whenever the status is not QUAL (no extension counts as PROV);
  - ``off``: no check (migrations of legacy data only).

  A VALI status coded in FR Core 2.1.0's ``fr-core-cs-v2-0445`` (whose rule fr-core-1 had a VALI
  identity carry its INS) is a warning, not a refusal; `may_reference_by_ins` still says no.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import ins_sharing_mode, ins_write_rule_mode
from ..fhir.outcome import Issue
from ..fhir.validation.profiles_fr import older_fr_core_vali
from .nir import is_valid_nir
from .status import NO_SHARE_COMMENTS, QUAL, identity_comments, identity_status
from .traits import RELIABILITY_URL, ins_from_patient

SHARING_ENV = "SOCLE_INS_SHARING"
WRITE_RULE_ENV = "SOCLE_INS_WRITE_RULE"
SHARING_MODES = ("strict", "status")
WRITE_MODES = ("declared", "strict", "off")


@dataclass(frozen=True, slots=True)
class InsDecision:
    """The answer of the enforcement point: `ok`, why (`reason`, `rule`), and what to do."""

    ok: bool
    reason: str
    action: str = ""
    rule: str = "INS-QUAL-ONLY"

    def __bool__(self) -> bool:
        return self.ok


def sharing_mode() -> str:
    mode = ins_sharing_mode().strip().lower() or "strict"
    if mode not in SHARING_MODES:
        raise ValueError(f"{SHARING_ENV} must be one of {', '.join(SHARING_MODES)}, not {mode!r}")
    return mode


def write_mode() -> str:
    mode = ins_write_rule_mode().strip().lower() or "declared"
    if mode not in WRITE_MODES:
        raise ValueError(f"{WRITE_RULE_ENV} must be one of {', '.join(WRITE_MODES)}, not {mode!r}")
    return mode


def _replaced_by(patient: Mapping[str, Any]) -> str | None:
    for link in patient.get("link") or []:
        if isinstance(link, dict) and link.get("type") == "replaced-by":
            ref = (link.get("other") or {}).get("reference")
            if isinstance(ref, str):
                return ref
    return None


def may_reference_by_ins(patient: Mapping[str, Any], *, mode: str | None = None) -> InsDecision:
    """Whether health data may be referenced with this Patient's matricule INS (QUAL only).

    `mode` overrides ``SOCLE_INS_SHARING`` (``strict`` or ``status``).
    """
    mode = mode or sharing_mode()
    if patient.get("resourceType") not in (None, "Patient"):
        return InsDecision(False, "not a Patient resource", "reference a Patient")
    status = identity_status(patient)
    if status != QUAL:
        return InsDecision(
            False,
            f"the identity is {status}, not QUAL: its INS may not be used",
            "qualify it: INSi retrieval plus a high-trust identity document (Patient/$ins-qualify)",
        )
    if mode == "status":
        return InsDecision(True, "qualified identity (QUAL)")
    survivor = _replaced_by(patient)
    if patient.get("active") is False or survivor:
        return InsDecision(
            False,
            "the record is inactive" + (f" (merged into {survivor})" if survivor else ""),
            f"reference the surviving record {survivor}" if survivor else "use the active record",
            "INS-ACTIVE-RECORD",
        )
    withdrawn = sorted(identity_comments(dict(patient)) & NO_SHARE_COMMENTS)
    if withdrawn:
        return InsDecision(
            False,
            f"the identity carries the comment(s) {', '.join(withdrawn)}",
            "the identitovigilance cell must resolve the doubt (Patient/$duplicates work-list)",
            "INS-TRUST-WITHDRAWN",
        )
    ins = ins_from_patient(dict(patient))
    if len(ins) != 1:
        return InsDecision(
            False,
            f"the record holds {len(ins)} INS identifiers (exactly one is needed)",
            "retrieve the INS from INSi again" if not ins else "resolve the INS conflict",
            "INS-ONE-IDENTIFIER",
        )
    if not is_valid_nir(ins[0].value):
        return InsDecision(
            False,
            "the INS matricule has an invalid key",
            "retrieve the INS from INSi again",
            "INS-VALID-KEY",
        )
    return InsDecision(True, "qualified identity (QUAL) with one valid INS")


def ins_write_rule(resource: dict[str, Any], where: str) -> list[Issue]:
    """Engine validator: an INS identifier only on a QUAL Patient (see the module doc)."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        return []
    mode = write_mode()
    if mode == "off":
        return []
    try:
        ins = ins_from_patient(resource)
    except (AttributeError, TypeError):
        return []  # malformed identifiers: the structural validator reports them
    if not ins:
        return []
    declared = any(
        isinstance(e, dict) and e.get("url") == RELIABILITY_URL
        for e in resource.get("extension") or []
    )
    if mode == "declared" and not declared:
        return []
    try:
        status = identity_status(resource)
    except (AttributeError, TypeError):
        return []
    if status == QUAL:
        return []
    path = f"{where}.resource.identifier" if where else "Patient.identifier"
    if older_fr_core_vali(resource):
        # FR Core 2.1.0 (still pinned by ANS guides) had a VALI identity carry its INS: the looser
        # older rule is a warning; sharing (may_reference_by_ins) still requires QUAL
        return [
            Issue(
                "warning",
                "business-rule",
                "rule INS-QUAL-ONLY: this VALI identity is coded in FR Core 2.1.0's "
                "fr-core-cs-v2-0445, which let it carry its INS; it is stored, but no document "
                "is shared with this INS until the identity is qualified (Patient/$ins-qualify)",
                (path,),
            )
        ]
    return [
        Issue(
            "error",
            "business-rule",
            f"rule INS-QUAL-ONLY: an INS matricule may only be carried by a qualified identity "
            f"(this one is {status}); qualify it with Patient/$ins-qualify, or keep the INS out "
            "of the record until then",
            (path,),
        )
    ]
