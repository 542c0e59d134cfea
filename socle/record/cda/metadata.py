"""Where a CDA header contradicts the DocumentReference it comes with: patient INS, type,
format, confidentiality and masterIdentifier, one check each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...fhir.outcome import Issue
from .. import terminology
from .model import CONFIDENTIALITY_OID, CdaHeader

_FHIR_CONFIDENTIALITY = {
    "https://mos.esante.gouv.fr/NOS/TRE_A08-HL7Confidentiality/FHIR/TRE-A08-HL7Confidentiality",
    "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
    "urn:oid:" + CONFIDENTIALITY_OID,
}

Report = Callable[[str, str], None]  # (diagnostics, path under the DocumentReference)


def compare_with_metadata(
    header: CdaHeader,
    docref: dict[str, Any],
    patient_ins: tuple[str, str] | None,
    where: str,
) -> list[Issue]:
    """Where the CDA header contradicts the DocumentReference it comes with (errors, code
    business-rule, located under `where`, e.g. "Bundle.entry[1].resource").

    `patient_ins` is the subject Patient's qualified INS (system OID, bare or `urn:oid:`, and
    matricule), or None if it has none. Checked: patient INS, type, format, confidentiality and
    masterIdentifier; a DocumentReference element that is absent is not a contradiction (except
    the patient: a header without INS, or a subject without qualified INS, is an error).
    """
    issues: list[Issue] = []

    def err(diagnostics: str, path: str) -> None:
        issues.append(Issue("error", "business-rule", diagnostics, (f"{where}.{path}",)))

    _check_patient(header, patient_ins, err)
    _check_type(header, docref, err)
    _check_format(header, docref, err)
    _check_confidentiality(header, docref, err)
    _check_master_identifier(header, docref, err)
    return issues


def _codings(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        codings = value.get("coding")
        if isinstance(codings, list):
            return [c for c in codings if isinstance(c, dict)]
    return []


def _fmt_codings(codings: list[dict[str, Any]]) -> str:
    return ", ".join(f"{c.get('system')}|{c.get('code')}" for c in codings) or "no coding"


def _check_patient(header: CdaHeader, patient_ins: tuple[str, str] | None, err: Report) -> None:
    if header.ins is None:
        err(
            "the CDA header has no INS: recordTarget/patientRole/id needs a matricule INS with "
            "root 1.2.250.1.213.1.4.8 (NIR) or 1.2.250.1.213.1.4.9 (NIA)",
            "subject",
        )
    elif patient_ins is None:
        err(
            f"the CDA header INS {header.ins[1]} ({header.ins[0]}) cannot be matched: the "
            "subject Patient has no qualified INS",
            "subject",
        )
    else:
        oid, value = patient_ins[0].removeprefix("urn:oid:"), patient_ins[1]
        if (oid, value) != header.ins:
            err(
                f"the CDA header INS {header.ins[1]} ({header.ins[0]}) is not the subject "
                f"Patient's INS {value} ({oid})",
                "subject",
            )


def _check_type(header: CdaHeader, docref: dict[str, Any], err: Report) -> None:
    type_codings = _codings(docref.get("type"))
    if not type_codings:
        return
    oid, code = header.type_code
    systems = {f"urn:oid:{oid}"}
    url = terminology.system_url(oid)
    if url:
        systems.add(url)
    if not any(c.get("system") in systems and c.get("code") == code for c in type_codings):
        err(
            f"DocumentReference.type ({_fmt_codings(type_codings)}) does not match the CDA "
            f"header code {code} (codeSystem {oid}"
            + (f", i.e. {url}" if url else ", a code system unknown to JDV_J07")
            + ")",
            "type",
        )


def _check_format(header: CdaHeader, docref: dict[str, Any], err: Report) -> None:
    content = docref.get("content")
    first = content[0] if isinstance(content, list) and content else None
    fmt = first.get("format") if isinstance(first, dict) else None
    if not isinstance(fmt, dict) or fmt.get("code") is None or header.format_code is None:
        return
    if fmt.get("code") != header.format_code:
        why = (
            f"mediaType {header.body_media_type}"
            if header.model_template == terminology.N1_TEMPLATE
            else "ASS_A11"
        )
        err(
            f"DocumentReference.content[0].format {fmt.get('code')} does not match the CDA "
            f"formatCode {header.format_code} (model templateId {header.model_template}, "
            f"by {why})",
            "content[0].format",
        )
        return
    expected = terminology.format_system(header.format_code)
    system = fmt.get("system")
    if system is not None and expected is not None and terminology.ans_system(system) != expected:
        err(
            f"DocumentReference.content[0].format {fmt.get('code')} has system {system}, "
            f"not {expected}",
            "content[0].format.system",
        )


def _check_confidentiality(header: CdaHeader, docref: dict[str, Any], err: Report) -> None:
    if header.confidentiality is None or header.confidentiality[0] != CONFIDENTIALITY_OID:
        return
    labels = docref.get("securityLabel")
    conf = [
        c
        for label in (labels if isinstance(labels, list) else [])
        for c in _codings(label)
        if c.get("system") in _FHIR_CONFIDENTIALITY
    ]
    if conf and not any(c.get("code") == header.confidentiality[1] for c in conf):
        err(
            f"DocumentReference.securityLabel confidentiality ({_fmt_codings(conf)}) does not "
            f"match the CDA confidentialityCode {header.confidentiality[1]}",
            "securityLabel",
        )


def _check_master_identifier(header: CdaHeader, docref: dict[str, Any], err: Report) -> None:
    master = docref.get("masterIdentifier")
    master_value = master.get("value") if isinstance(master, dict) else None
    if not isinstance(master_value, str):
        return
    root, ext = header.document_id
    expected_id = header.unique_id
    accepted = {expected_id, f"{root}^{ext}" if ext else root}
    if master_value not in accepted:
        err(
            f"DocumentReference.masterIdentifier {master_value} is not the CDA document id "
            f"{expected_id} (root {root}" + (f", extension {ext})" if ext else ")"),
            "masterIdentifier.value",
        )
