"""The document producer's transactions: ITI-65 Provide Document Bundle and ITI-105 Simplified
Publish (PDSm flux 1/2 and 9).

ITI-65 is a ``transaction`` Bundle posted to the base: one SubmissionSet List, the
DocumentReferences, their Binaries, optional Folder Lists, and PATCH entries that set replaced
entries ``superseded``. Its shape is checked here (entries, submission set, references between
them); each document is then checked by the record's write rule inside the engine's transaction,
so a single fault rejects the whole submission and nothing is written.

ITI-105 is a DocumentReference posted with its content inline (``attachment.data``): it is turned
into the same unit of work (a Binary and the entry pointing to it); the manager supersedes a
replaced entry itself.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..fhir.attachments import decode_base64, sha1_base64
from ..fhir.engine import Engine, EntryRequest
from ..fhir.outcome import FhirError, Issue
from ..fhir.rest.transactions import parse_entries
from .pdsm import (
    COMPREHENSIVE_BUNDLE,
    FOLDER_CODE,
    MHD_BUNDLES,
    SIMPLIFIED_PROFILES,
    SOURCE_ID,
    SUBMISSIONSET_CODE,
    declare_record_entry,
    is_record_document,
    list_code,
    profiles_of,
)

PROVIDE_PROFILES = frozenset({COMPREHENSIVE_BUNDLE, *MHD_BUNDLES})


def is_provide_bundle(bundle: Any) -> bool:
    """An ITI-65 submission: by its declared profile, or a transaction carrying a SubmissionSet."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return False
    if PROVIDE_PROFILES & set(profiles_of(bundle)):
        return True
    entries = bundle.get("entry")
    if bundle.get("type") != "transaction" or not isinstance(entries, list):
        return False
    return any(
        isinstance(e, dict)
        and isinstance(e.get("resource"), dict)
        and e["resource"].get("resourceType") == "List"
        and list_code(e["resource"]) == SUBMISSIONSET_CODE
        for e in entries
    )


def _issue(code: str, text: str, where: str) -> Issue:
    return Issue("error", code, text, (where,))


def check_provide_bundle(bundle: dict[str, Any]) -> None:
    """The submission's shape (PDSm_ComprehensiveProvideDocumentBundle); 422 naming each fault."""
    issues: list[Issue] = []
    if bundle.get("type") != "transaction":
        raise FhirError(
            422,
            [_issue("business-rule", "ITI-65: the Bundle is a transaction", "Bundle.type")],
        )
    entries = bundle.get("entry") or []
    full_urls: dict[str, tuple[int, str]] = {}
    submission: list[int] = []
    docs: list[int] = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            continue  # the generic parser reports it
        res: dict[str, Any] = e["resource"] if isinstance(e.get("resource"), dict) else {}
        method = str((e.get("request") or {}).get("method") or "").upper()
        rtype = res.get("resourceType")
        where = f"Bundle.entry[{i}]"
        if isinstance(e.get("fullUrl"), str) and isinstance(rtype, str):
            full_urls[e["fullUrl"]] = (i, rtype)
        if method == "PATCH":
            url = str((e.get("request") or {}).get("url") or "")
            if not url.startswith("DocumentReference"):
                issues.append(
                    _issue(
                        "business-rule",
                        "ITI-65: PATCH entries only update DocumentReferences (replaced entries)",
                        f"{where}.request.url",
                    )
                )
            continue
        if method != "POST":
            issues.append(
                _issue(
                    "business-rule",
                    f"ITI-65: resources are created (POST), not {method or 'no method'}",
                    f"{where}.request.method",
                )
            )
        if rtype == "List":
            code = list_code(res)
            if code == SUBMISSIONSET_CODE:
                submission.append(i)
            elif code != FOLDER_CODE:
                issues.append(
                    _issue(
                        "business-rule",
                        "ITI-65: a List is a SubmissionSet or a Folder (code from MHDlistTypes)",
                        f"{where}.resource.code",
                    )
                )
        elif rtype == "DocumentReference":
            docs.append(i)
        elif rtype != "Binary":
            issues.append(
                _issue(
                    "business-rule",
                    f"ITI-65 carries a SubmissionSet, DocumentReferences, Binaries and Folders, "
                    f"not a {rtype}",
                    f"{where}.resource",
                )
            )
    if len(submission) != 1:
        issues.append(
            _issue(
                "business-rule",
                f"ITI-65: exactly one SubmissionSet List, not {len(submission)}",
                "Bundle.entry",
            )
        )
    if not docs:
        issues.append(
            _issue("business-rule", "ITI-65: at least one DocumentReference", "Bundle.entry")
        )
    subjects = set()
    for i in docs:
        doc = entries[i]["resource"]
        subjects.add(str((doc.get("subject") or {}).get("reference")))
        for j, content in enumerate(doc.get("content") or []):
            att_url = ((content or {}).get("attachment") or {}).get("url")
            target = full_urls.get(att_url) if isinstance(att_url, str) else None
            if att_url is not None and (target is None or target[1] != "Binary"):
                issues.append(
                    _issue(
                        "business-rule",
                        "ITI-65: a new document's attachment.url is the fullUrl of a Binary entry "
                        "of the same Bundle",
                        f"Bundle.entry[{i}].resource.content[{j}].attachment.url",
                    )
                )
    if len(submission) == 1:
        i = submission[0]
        ss = entries[i]["resource"]
        where = f"Bundle.entry[{i}].resource"
        if ss.get("status") != "current":
            issues.append(
                _issue("business-rule", "The SubmissionSet is current", f"{where}.status")
            )
        if ss.get("mode") != "working":
            issues.append(
                _issue("business-rule", "The SubmissionSet mode is working", f"{where}.mode")
            )
        if not ss.get("date"):
            issues.append(
                _issue("required", "PDSm: SubmissionSet.date is required", f"{where}.date")
            )
        if not ss.get("source"):
            issues.append(
                _issue(
                    "required",
                    "PDSm: SubmissionSet.source (its author: PractitionerRole, Device or Patient) "
                    "is required",
                    f"{where}.source",
                )
            )
        if not any(
            isinstance(x, dict) and x.get("url") == SOURCE_ID for x in ss.get("extension") or []
        ):
            issues.append(
                _issue(
                    "required",
                    f"PDSm: the SubmissionSet carries its source id ({SOURCE_ID})",
                    f"{where}.extension",
                )
            )
        listed = {
            str((x.get("item") or {}).get("reference"))
            for x in ss.get("entry") or []
            if isinstance(x, dict)
        }
        for d in docs:
            full = entries[d].get("fullUrl")
            if full not in listed:
                issues.append(
                    _issue(
                        "business-rule",
                        f"The SubmissionSet lists every DocumentReference of the Bundle "
                        f"(entry.item = {full!r} is missing)",
                        f"{where}.entry",
                    )
                )
        ss_subject = str((ss.get("subject") or {}).get("reference"))
        if subjects and subjects != {ss_subject}:
            issues.append(
                _issue(
                    "business-rule",
                    "The SubmissionSet and its documents are about one and the same patient",
                    f"{where}.subject",
                )
            )
    if issues:
        raise FhirError(422, issues)


def check_provided_bundle(engine: Engine, bundle: Any) -> None:
    """ITI-65, on any Bundle POSTed to the base: an ITI-65 submission gets its shape checked
    here, then the engine's atomic transaction (the record rule per document); any other Bundle
    is left to the generic processing."""
    if not is_provide_bundle(bundle):
        return
    if bundle.get("type") == "transaction":  # else check_provide_bundle says what ITI-65 wants
        # the generic shape first (a 400 where it breaks), then the ITI-65 rules (422)
        settings = engine.settings
        parse_entries(bundle, settings.max_bundle_entries, settings.max_json_depth)
        # R4 types before the ITI-65 rules read the resources (a Binary's bytes are the
        # engine's to check: they are not read here)
        for i, entry in enumerate(bundle.get("entry") or []):
            res = entry.get("resource")
            if isinstance(res, dict) and res.get("resourceType") != "Binary":
                engine.validate(res, f"Bundle.entry[{i}]")
    check_provide_bundle(bundle)
    # what ITI-65 carries is shared to the record: its entries say so (docs/record.md)
    for entry in bundle.get("entry") or []:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and res.get("resourceType") == "DocumentReference":
            declare_record_entry(res)


def is_simplified_publish(resource: Any) -> bool:
    """ITI-105: a DocumentReference POSTed under a simplified-publish profile, or under another
    record profile with its content inline. Inline content alone does not make a record entry
    (a coordination note may carry its text inline): it stays an ordinary create."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "DocumentReference":
        return False
    if SIMPLIFIED_PROFILES & set(profiles_of(resource)):
        return True
    if not is_record_document(resource):
        return False
    contents = resource.get("content")
    return isinstance(contents, list) and any(
        isinstance(c, dict) and isinstance(c.get("attachment"), dict) and "data" in c["attachment"]
        for c in contents
    )


def simplified_publish(engine: Engine, doc: dict[str, Any]) -> list[EntryRequest] | None:
    """ITI-105, on a DocumentReference create: the unit of work it becomes, or None for a plain
    create (no inline content)."""
    if not is_simplified_publish(doc):
        return None
    engine.validate(doc, "")  # R4 types before ITI-105 reads it
    return simplified_entries(doc)


def simplified_entries(doc: dict[str, Any]) -> list[EntryRequest]:
    """ITI-105: the document and a Binary per inline attachment, as one unit of work."""
    issues: list[Issue] = []
    if doc.get("status") != "current":
        issues.append(
            _issue("business-rule", "ITI-105: status is current", "DocumentReference.status")
        )
    entries: list[EntryRequest] = []
    subject = (doc.get("subject") or {}).get("reference")
    for i, content in enumerate(doc.get("content") or []):
        att = (content or {}).get("attachment") or {}
        where = f"DocumentReference.content[{i}].attachment"
        if "url" in att:
            issues.append(
                _issue(
                    "business-rule",
                    "ITI-105: the content is inline (data), without url",
                    f"{where}.url",
                )
            )
            continue
        data = att.get("data")
        if not isinstance(data, str):
            issues.append(
                _issue("required", "ITI-105: attachment.data is required", f"{where}.data")
            )
            continue
        try:
            raw = decode_base64(data)
        except ValueError:
            issues.append(_issue("value", "attachment.data is not valid base64", f"{where}.data"))
            continue
        full = f"urn:uuid:{uuid.uuid4()}"
        binary: dict[str, Any] = {
            "resourceType": "Binary",
            "contentType": att.get("contentType") or "application/octet-stream",
            "data": data,
        }
        if isinstance(subject, str):
            binary["securityContext"] = {"reference": subject}
        entries.append(EntryRequest("POST", "Binary", binary, full_url=full))
        del att["data"]
        att["url"] = full
        # the manager computes what the producer may leave out; given values are checked
        att.setdefault("size", len(raw))
        att.setdefault("hash", sha1_base64(raw))
    if issues:
        raise FhirError(422, issues)
    # the entry keeps the profile it was published under: the record rule holds it to that
    # profile's cardinalities, and consumers see how it was shared (docs/record.md)
    entries.append(EntryRequest("POST", "DocumentReference", doc))
    return entries
