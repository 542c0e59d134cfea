"""The shared record's rules on every write of a document entry (PDSm, fr-documents §1).

An engine write rule: it sees each unit of work (a single create, a PATCH, an ITI-65 Bundle…)
after validation and before anything is written, inside the writing transaction, so a document
that breaks a rule fails the whole unit and nothing is written. For each DocumentReference:

* a **new** entry: PDSm elements present (custodian, date, contained author, period start,
  attachment size + SHA-1 + title + language…), codes in the ANS value sets, subject a Patient
  with a qualified INS, authors and custodian in the directory by national id, attachment size
  and hash equal to the Binary's content, a CDA header that agrees with the metadata, and a
  replaced entry (``relatesTo = replaces``) of the same patient, by its author, which becomes
  ``superseded`` in the same transaction;
* a **change**: only ``status``, ``securityLabel`` and the ``isArchived`` extension (else 405);
  ``entered-in-error`` (logical deletion) by the author or the author's organisation only;
  ``superseded`` only with a replacing entry; never a deletion.

Visibility codes (TRE_A07) of ``securityLabel`` are mirrored in ``meta.security``, where the
access policy enforces them on every read path; contained professional authors get their
IdNat_PS as the reference's ``identifier`` (the policy's author exemption of ``MASQUE_PS``).
A Binary that holds a document's content never changes and is never deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection

from ..fhir.access import Access
from ..fhir.attachments import content_mismatches
from ..fhir.json import decode
from ..fhir.outcome import FhirError, Issue, forbidden
from ..fhir.storage.binary import ContentRef, content_ref, decode_data, sha1
from ..fhir.storage.content import ContentStore
from ..fhir.storage.reader import Version, find_current, find_currents
from ..fhir.storage.writer import PendingWrite
from ..identity.sharing import may_reference_by_ins
from ..identity.traits import ins_from_patient
from . import directory
from .cda import CdaError, CdaHeader, compare_with_metadata, read_header
from .pdsm import CDA_CONTENT_TYPES, IS_ARCHIVED, VISIBILITY, is_record_document, is_simplified
from .read_ahead import ContentKey, taken
from .terminology import ans_system, check_codeable, value_set

MUTABLE = ("status", "securityLabel")
NEW_STATUS = "current"
FINAL_STATUSES = frozenset({"superseded", "entered-in-error"})
AUTHOR_TYPES = frozenset({"Practitioner", "PractitionerRole", "Device", "Patient", "Organization"})


def _loc(w: PendingWrite) -> str:
    return f"{w.where}.resource" if w.where else "DocumentReference"


def _ref_id(ref: Any, rtype: str) -> str | None:
    if isinstance(ref, dict):
        ref = ref.get("reference")
    if isinstance(ref, str) and ref.startswith(rtype + "/"):
        rid = ref[len(rtype) + 1 :]
        return rid if rid and "/" not in rid else None
    return None


def _err(issues: list[Issue], status: int = 422) -> FhirError:
    return FhirError(status, issues)


def _issue(code: str, text: str, where: str) -> Issue:
    return Issue("error", code, text, (where,))


@dataclass
class Author:
    """Who wrote an entry: professionals' IdNat_PS, organisations' IdNat_Struct."""

    professionals: set[str] = field(default_factory=set)
    organisations: set[str] = field(default_factory=set)
    organisation_ids: set[str] = field(default_factory=set)  # Organization resource ids


def _identifiers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    out = resource.get("identifier")
    if isinstance(out, dict):
        return [out]
    return [i for i in out if isinstance(i, dict)] if isinstance(out, list) else []


def _first_id(idents: list[dict[str, Any]], kinds: dict[str, str]) -> str | None:
    for ident in idents:
        nid = directory.national_id(ident.get("system"), ident.get("value"), kinds)
        if nid:
            return nid
    return None


Contained = dict[str, dict[str, Any]]


def _contained(doc: dict[str, Any]) -> Contained:
    """The contained resources of ``doc`` by id."""
    return {
        c["id"]: c
        for c in doc.get("contained") or []
        if isinstance(c, dict) and isinstance(c.get("id"), str)
    }


def _local(contained: Contained, ref: Any) -> dict[str, Any] | None:
    """The contained resource a ``#id`` reference names (None for any other reference)."""
    target = ref.get("reference") if isinstance(ref, dict) else None
    if isinstance(target, str) and target.startswith("#"):
        return contained.get(target[1:])
    return None


def _practitioner_of(role: dict[str, Any], contained: Contained) -> dict[str, Any]:
    """What names a PractitionerRole's professional: its contained Practitioner, else the
    reference itself (a logical reference carries the identifier)."""
    prac = role.get("practitioner")
    if not isinstance(prac, dict):
        return {}
    return _local(contained, prac) or prac


def authors_of(doc: dict[str, Any]) -> Author:
    """The national ids of an entry's authors (contained resources and logical references) and
    of its custodian."""
    contained = _contained(doc)
    out = Author()

    def add_org(ref: Any) -> None:
        if not isinstance(ref, dict):
            return
        res = _local(contained, ref)
        idents = _identifiers(res) if res else _identifiers(ref)
        nid = _first_id(idents, directory.STRUCT_SYSTEMS)
        if nid:
            out.organisations.add(nid)
        org = _ref_id(ref, "Organization")
        if org:
            out.organisation_ids.add(org)

    for a in doc.get("author") or []:
        if not isinstance(a, dict):
            continue
        res = _local(contained, a) or {}
        rtype = res.get("resourceType")
        if rtype == "Practitioner" or (not res and _ref_id(a, "Practitioner")):
            nid = _first_id(_identifiers(res or a), directory.PS_SYSTEMS)
            if nid:
                out.professionals.add(nid)
        elif rtype == "PractitionerRole":
            nid = _first_id(_identifiers(_practitioner_of(res, contained)), directory.PS_SYSTEMS)
            if nid:
                out.professionals.add(nid)
            add_org(res.get("organization"))
        elif rtype == "Organization" or _ref_id(a, "Organization"):
            add_org(a)
        if isinstance(a.get("identifier"), dict):
            nid = _first_id([a["identifier"]], directory.PS_SYSTEMS)
            if nid:
                out.professionals.add(nid)
    add_org(doc.get("custodian"))
    return out


async def acts_for_author(conn: AsyncConnection, access: Access, doc: dict[str, Any]) -> bool:
    """Whether the caller is one of the entry's authors or acts for the author's organisation
    (or the custodian). The platform itself may."""
    if access.platform:
        return True
    principal = access.principal
    if principal is None:
        return False
    author = authors_of(doc)
    nid = principal.national_id
    if nid and nid in author.professionals:
        return True
    org_ids = access.acting_for
    if not org_ids:
        return False
    if author.organisation_ids & org_ids:
        return True
    return bool(author.organisations & await directory.organisations_of(conn, org_ids))


def _without_mutable(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k not in (*MUTABLE, "meta", "id", "text")}
    ext = [
        e
        for e in doc.get("extension") or []
        if not (isinstance(e, dict) and e.get("url") == IS_ARCHIVED)
    ]
    if ext:
        out["extension"] = ext
    else:
        out.pop("extension", None)
    return out


def _unlinked(node: Any) -> Any:
    """The resource with every Patient reference blanked."""
    if isinstance(node, dict):
        return {
            k: "Patient/*"
            if k == "reference" and isinstance(v, str) and v.startswith("Patient/")
            else _unlinked(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_unlinked(v) for v in node]
    return node


def _changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = _without_mutable(old), _without_mutable(new)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def sync_labels(doc: dict[str, Any]) -> None:
    """``meta.security`` carries the visibility codes (TRE_A07) of ``securityLabel``."""
    codes = []
    for label in doc.get("securityLabel") or []:
        for c in (label or {}).get("coding") or []:
            if isinstance(c, dict) and c.get("system") == VISIBILITY and c.get("code"):
                codes.append({"system": VISIBILITY, "code": c["code"]})
    meta = doc.setdefault("meta", {})
    kept = [
        s
        for s in meta.get("security") or []
        if not (isinstance(s, dict) and s.get("system") == VISIBILITY)
    ]
    merged = kept + [c for i, c in enumerate(codes) if c not in codes[:i]]
    if merged:
        meta["security"] = merged
    else:
        meta.pop("security", None)
    if not meta:
        doc.pop("meta", None)


def normalize(doc: dict[str, Any]) -> None:
    """What the record adds to every entry, so that re-sending one is a no-op: the visibility
    codes in ``meta.security``, the IdNat_PS of contained professional authors on their
    references."""
    sync_labels(doc)
    contained = _contained(doc)
    for a in doc.get("author") or []:
        res = _local(contained, a)
        if res is None or "identifier" in a:
            continue
        if res.get("resourceType") == "PractitionerRole":
            res = _practitioner_of(res, contained)
        nid = _first_id(_identifiers(res), directory.PS_SYSTEMS)
        if nid:
            a["identifier"] = {"system": directory.IDNAT_PS, "value": nid}


def _label_issues(doc: dict[str, Any], loc: str) -> list[Issue]:
    conf, vis = value_set("confidentiality"), value_set("visibility")
    issues: list[Issue] = []
    has_conf = False
    for i, label in enumerate(doc.get("securityLabel") or []):
        for j, c in enumerate((label or {}).get("coding") or []):
            key = (
                (ans_system(c.get("system")), c.get("code"))
                if isinstance(c, dict)
                else (None, None)
            )
            if key in conf.codes:
                has_conf = True
            elif key not in vis.codes:
                issues.append(
                    _issue(
                        "code-invalid",
                        f"securityLabel {key[0]}|{key[1]} is in neither {conf.name} ({conf.url}) "
                        f"nor {vis.name} ({vis.url})",
                        f"{loc}.securityLabel[{i}].coding[{j}]",
                    )
                )
    if not has_conf and not issues:
        issues.append(
            _issue(
                "required",
                f"A document entry needs a confidentiality code of {conf.name} ({conf.url}), "
                "e.g. N (normal)",
                f"{loc}.securityLabel",
            )
        )
    return issues


@dataclass
class _Unit:
    conn: AsyncConnection
    access: Access
    writes: list[PendingWrite]
    store: ContentStore | None
    by_key: dict[tuple[str, str], PendingWrite] = field(default_factory=dict)
    # replaced entry id -> (the replacing write, the entry as locked, its version)
    supersede: dict[str, tuple[PendingWrite, dict[str, Any], int]] = field(default_factory=dict)
    ps_ids: dict[str, list[str]] = field(default_factory=dict)  # IdNat_PS -> locations
    struct_ids: dict[str, list[str]] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    stored: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)
    # document ids (masterIdentifier system, value) -> the entries already holding them
    shared: dict[tuple[str | None, str], str] = field(default_factory=dict)

    async def prefetch(self, docs: list[PendingWrite]) -> None:
        """The subjects, the contents (Binary) and the document ids of the new entries, in
        three queries for the unit (a bulk import's chunk holds a thousand)."""
        binaries = {
            bid
            for w in docs
            for content in (w.resource or {}).get("content") or []
            if isinstance(content, dict)
            and isinstance(att := content.get("attachment"), dict)
            and isinstance(url := att.get("url"), str)
            and (bid := _ref_id(url, "Binary"))
            and ("Binary", bid) not in self.by_key
            and ("Binary", bid) not in self.stored
        }
        if binaries:
            found = await find_currents(self.conn, "Binary", sorted(binaries))
            for bid in binaries:
                v = found.get(bid)
                self.stored[("Binary", bid)] = decode(v.content) if v and v.content else None
        patients = {
            pid
            for w in docs
            if (pid := _ref_id((w.resource or {}).get("subject"), "Patient"))
            and ("Patient", pid) not in self.by_key
        }
        if patients:
            cur = await self.conn.execute(
                "SELECT id, content::text FROM resource "
                "WHERE rtype = 'Patient' AND id = ANY(%s) AND NOT deleted",
                (sorted(patients),),
            )
            for rid, content in await cur.fetchall():
                self.stored[("Patient", str(rid))] = decode(content)
            for pid in patients:
                self.stored.setdefault(("Patient", pid), None)
        ids = [
            (mi.get("system"), mi["value"])
            for w in docs
            if isinstance(mi := (w.resource or {}).get("masterIdentifier"), dict)
            and isinstance(mi.get("value"), str)
        ]
        if ids:
            cur = await self.conn.execute(
                "SELECT t.system, t.code, r.id FROM idx_token t JOIN resource r ON r.rid = t.rid "
                "WHERE t.rtype = 'DocumentReference' AND t.param = 'identifier' "
                "AND t.code = ANY(%s) AND NOT r.deleted",
                (sorted({v for _, v in ids}),),
            )
            for system, code, rid in await cur.fetchall():
                self.shared[(system, str(code))] = str(rid)

    async def resource(self, rtype: str, rid: str) -> dict[str, Any] | None:
        """The resource as this unit of work leaves it (its own write, else stored)."""
        w = self.by_key.get((rtype, rid))
        if w is not None:
            return w.resource if w.kind != "delete" else None
        if (rtype, rid) not in self.stored:
            found = await find_current(self.conn, rtype, rid)
            self.stored[(rtype, rid)] = decode(found.content) if found and found.content else None
        return self.stored[(rtype, rid)]


class DocumentRules:
    """The engine write rule (see the module doc); ``store`` reads CDA content to check it."""

    types = frozenset({"DocumentReference", "Binary"})
    checks = types

    def __init__(self, store: ContentStore | None) -> None:
        self.store = store

    async def __call__(
        self, conn: AsyncConnection, writes: list[PendingWrite], access: Access
    ) -> None:
        if not any(w.rtype in ("DocumentReference", "Binary") for w in writes):
            return
        unit = _Unit(conn, access, writes, self.store)
        unit.by_key = {(w.rtype, w.id): w for w in writes}
        # the rows replaced, locked, in one query per type (a create has a fresh id: nothing
        # to replace)
        locked = {
            rtype: await find_currents(
                conn,
                rtype,
                [w.id for w in writes if w.rtype == rtype and w.kind != "create"],
                lock=True,
            )
            for rtype in ("Binary", "DocumentReference")
        }
        for w in list(writes):
            if w.rtype == "Binary" and w.kind != "create":
                _check_binary_change(w, locked["Binary"].get(w.id))
        news: list[tuple[PendingWrite, dict[str, Any] | None]] = []
        for w in writes:
            if w.rtype != "DocumentReference":
                continue
            found = locked["DocumentReference"].get(w.id)
            old = decode(found.content) if found and found.content else None
            recorded = old is not None and is_record_document(old)
            if not recorded and not is_record_document(w.resource):
                # not shared to the record: ordinary FHIR (docs/record.md), but a DMP visibility
                # label it carries is still enforced by the policy (secure by default)
                if w.resource is not None:
                    sync_labels(w.resource)
                continue
            if w.kind == "delete":
                raise _err(
                    [
                        _issue(
                            "not-supported",
                            "Document entries are never deleted: DELETE the entry itself (it "
                            "becomes entered-in-error) or PATCH its status",
                            w.where or "DocumentReference",
                        )
                    ],
                    405,
                )
            assert w.resource is not None
            if recorded and not is_record_document(w.resource):
                raise _err(
                    [
                        _issue(
                            "not-supported",
                            "A shared record entry keeps its PDSm profile in meta.profile",
                            f"{_loc(w)}.meta.profile",
                        )
                    ],
                    405,
                )
            normalize(w.resource)
            # an entry that was not shared yet (a note now declared a record entry) is new to it
            news.append((w, old if recorded else None))
        await unit.prefetch([w for w, old_doc in news if old_doc is None])
        for w, old_doc in news:
            if old_doc is None:
                await _check_new(unit, w)
        await _check_directory(unit)
        if unit.issues:
            raise _err(unit.issues)
        for w, old_doc in news:
            if old_doc is not None:
                await _check_change(unit, w, old_doc)
        _supersede(unit)


def _check_binary_change(w: PendingWrite, old: Version | None) -> None:
    if old is None or not old.content:
        return
    stored = decode(old.content)
    if content_ref(stored) is not None:
        if w.kind == "update" and w.resource is not None:
            same = {k: v for k, v in w.resource.items() if k not in ("meta", "id")}
            was = {k: v for k, v in stored.items() if k not in ("meta", "id")}
            if same == was and content_ref(w.resource) == content_ref(stored):
                return  # the same content sent again: a no-op
        raise _err(
            [
                _issue(
                    "not-supported",
                    f"Binary/{w.id} holds a document's content, which never changes: publish a "
                    "replacing document (relatesTo replaces) instead",
                    w.where or "Binary",
                )
            ],
            405,
        )


def _require(doc: dict[str, Any], loc: str, issues: list[Issue], simplified: bool) -> None:
    """The elements a new entry must carry: the comprehensive profile's, or ITI-105's own
    (PDSm simplified publish: no securityLabel, context, format or attachment language needed;
    ``size``/``hash`` are computed from the inline data)."""

    def need(path: str, value: Any, what: str, comprehensive_only: bool = False) -> None:
        if comprehensive_only and simplified:
            return
        if value in (None, "", [], {}):
            issues.append(_issue("required", f"PDSm: {what} is required", f"{loc}.{path}"))

    need(
        "masterIdentifier",
        doc.get("masterIdentifier"),
        "masterIdentifier (the document's uniqueId)",
    )
    need("type", doc.get("type"), "type (typeCode, JDV_J07)")
    need("category", doc.get("category"), "category (classCode, JDV_J06)")
    need("subject", doc.get("subject"), "subject (the patient)")
    need("date", doc.get("date"), "date")
    need("author", doc.get("author"), "author")
    need("custodian", doc.get("custodian"), "custodian")
    need(
        "securityLabel",
        doc.get("securityLabel"),
        "securityLabel (confidentiality)",
        comprehensive_only=True,
    )
    need("content", doc.get("content"), "content")
    context = doc.get("context") or {}
    need(
        "context.period.start",
        (context.get("period") or {}).get("start"),
        "context.period.start",
        comprehensive_only=True,
    )
    need(
        "context.facilityType",
        context.get("facilityType"),
        "context.facilityType (JDV_J02)",
        comprehensive_only=True,
    )
    need(
        "context.practiceSetting",
        context.get("practiceSetting"),
        "context.practiceSetting (JDV_J04)",
        comprehensive_only=True,
    )
    for i, content in enumerate(doc.get("content") or []):
        att = (content or {}).get("attachment") or {}
        at = f"content[{i}].attachment"
        need(f"{at}.contentType", att.get("contentType"), "attachment.contentType")
        need(f"{at}.size", att.get("size"), "attachment.size")
        need(f"{at}.hash", att.get("hash"), "attachment.hash (SHA-1, base64)")
        need(f"{at}.title", att.get("title"), "attachment.title")
        need(
            f"{at}.language",
            att.get("language"),
            "attachment.language (fr-FR)",
            comprehensive_only=True,
        )
        need(f"{at}.url", att.get("url"), "attachment.url (the Binary of the content)")
        need(
            f"content[{i}].format",
            (content or {}).get("format"),
            "content.format (JDV_J10)",
            comprehensive_only=True,
        )
        if att.get("language") not in (None, "fr-FR"):
            issues.append(
                _issue(
                    "value",
                    f"PDSm: attachment.language is fr-FR for a French producer, not "
                    f"{att.get('language')!r}",
                    f"{loc}.{at}.language",
                )
            )


def _codes(doc: dict[str, Any], loc: str, simplified: bool) -> list[Issue]:
    issues = check_codeable("type", doc.get("type"), f"{loc}.type")
    for i, cat in enumerate(doc.get("category") or []):
        issues += check_codeable("class", cat, f"{loc}.category[{i}]")
    for i, content in enumerate(doc.get("content") or []):
        fmt = (content or {}).get("format")
        if fmt is not None:
            issues += check_codeable("format", fmt, f"{loc}.content[{i}].format")
    context = doc.get("context") or {}
    if context.get("facilityType") is not None:
        issues += check_codeable("facility", context["facilityType"], f"{loc}.context.facilityType")
    if context.get("practiceSetting") is not None:
        issues += check_codeable(
            "setting", context["practiceSetting"], f"{loc}.context.practiceSetting"
        )
    if simplified:
        # ITI-105's profile binds securityLabel to JDV_J08 as extensible, with no constraint
        # making it an error: optional, and a code outside the value set is not refused
        return issues
    return issues + _label_issues(doc, loc)


# ITI-105's profile names its authors by reference (AS PractitionerRole, AS Practitioner, AS
# Organization, Device, FR Core Patient or RelatedPerson), not only as contained resources
REFERENCED_AUTHORS = ("PractitionerRole", "Practitioner", "Organization", "Device", "RelatedPerson")


async def _authors(
    unit: _Unit, doc: dict[str, Any], loc: str, subject: str | None, simplified: bool
) -> None:
    """Authors are contained resources (PDSm) named by national ids (or, in ITI-105, references
    to such resources of this server); the custodian an organisation of the directory."""
    contained = _contained(doc)
    for i, a in enumerate(doc.get("author") or []):
        at = f"{loc}.author[{i}]"
        ref = a.get("reference") if isinstance(a, dict) else None
        if isinstance(ref, str) and _ref_id(ref, "Patient") and _ref_id(ref, "Patient") == subject:
            continue  # a document the patient deposits
        if simplified and isinstance(ref, str) and not ref.startswith("#"):
            await _referenced_author(unit, a, ref, at)
            continue
        if not (isinstance(ref, str) and ref.startswith("#")):
            unit.issues.append(
                _issue(
                    "business-rule",
                    "PDSm: an author is a contained Practitioner, PractitionerRole, Device or "
                    f"Patient (reference '#id'), not {ref!r}",
                    at,
                )
            )
            continue
        res = contained.get(ref[1:])
        if res is None:
            unit.issues.append(_issue("not-found", f"No contained resource {ref}", at))
            continue
        rtype = res.get("resourceType")
        if rtype not in AUTHOR_TYPES:
            unit.issues.append(_issue("business-rule", f"PDSm: an author may not be a {rtype}", at))
            continue
        if rtype == "Practitioner":
            _professional(unit, res, f"{loc}.contained[{_index(doc, res)}]")
        elif rtype == "PractitionerRole":
            here = f"{loc}.contained[{_index(doc, res)}]"
            _professional(unit, _practitioner_of(res, contained), f"{here}.practitioner")
            org = res.get("organization")
            if isinstance(org, dict):
                _organisation(unit, contained, org, f"{here}.organization")
        elif rtype == "Organization":
            _organisation(unit, contained, {"reference": ref}, at)
    custodian = doc.get("custodian")
    if isinstance(custodian, dict):
        _organisation(unit, contained, custodian, f"{loc}.custodian")


async def _referenced_author(unit: _Unit, author: dict[str, Any], ref: str, at: str) -> None:
    """An ITI-105 author given by reference: a resource of this server whose professional (a
    PractitionerRole's practitioner) is in the directory; the reference gets the professional's
    IdNat_PS, as a contained author's does (authorship for deletion and MASQUE_PS)."""
    rtype, _, rid = ref.partition("/")
    if rtype not in REFERENCED_AUTHORS or not rid or "/" in rid:
        unit.issues.append(
            _issue(
                "business-rule",
                "PDSm simplified publish: an author is a PractitionerRole, Practitioner, "
                f"Organization, Device, RelatedPerson or the patient, not {ref!r}",
                at,
            )
        )
        return
    res = await unit.resource(rtype, rid)
    if res is None:
        unit.issues.append(_issue("not-found", f"{ref} is not known", at))
        return
    if rtype == "Organization":
        _organisation(unit, {}, {"reference": ref}, at)
        return
    if rtype == "PractitionerRole":
        role = res
        res = {}
        prac = _ref_id(role.get("practitioner"), "Practitioner")
        if prac is not None:
            res = await unit.resource("Practitioner", prac) or {}
        elif isinstance(role.get("practitioner"), dict):
            res = role["practitioner"]  # a logical reference: its identifier names the professional
    if rtype in ("PractitionerRole", "Practitioner"):
        before = len(unit.issues)
        _professional(unit, res, at)
        nid = _first_id(_identifiers(res), directory.PS_SYSTEMS)
        if len(unit.issues) == before and nid and "identifier" not in author:
            author["identifier"] = {"system": directory.IDNAT_PS, "value": nid}


def _index(doc: dict[str, Any], res: dict[str, Any]) -> int:
    for i, c in enumerate(doc.get("contained") or []):
        if c is res:
            return i
    return 0


def _professional(unit: _Unit, res: dict[str, Any], at: str) -> None:
    nid = _first_id(_identifiers(res), directory.PS_SYSTEMS)
    if nid is None:
        unit.issues.append(
            _issue(
                "business-rule",
                f"A professional author is named by its IdNat_PS (system {directory.IDNAT_PS}, "
                "'8' + RPPS) or its RPPS",
                f"{at}.identifier",
            )
        )
        return
    if not directory.IDNAT_PS_RE.match(nid):
        unit.issues.append(
            _issue(
                "value", f"{nid!r} is not an IdNat_PS (prefix 0,1,3,4,5,6 or 8)", f"{at}.identifier"
            )
        )
        return
    unit.ps_ids.setdefault(nid, []).append(f"{at}.identifier")


def _organisation(unit: _Unit, contained: Contained, ref: dict[str, Any], at: str) -> None:
    target = ref.get("reference")
    if isinstance(target, str) and target.startswith("#"):
        res = _local(contained, ref)
        idents = _identifiers(res) if res else []
    elif _ref_id(ref, "Organization"):
        unit.struct_ids.setdefault("id:" + str(_ref_id(ref, "Organization")), []).append(at)
        return
    else:
        idents = _identifiers(ref)
    nid = _first_id(idents, directory.STRUCT_SYSTEMS)
    if nid is None:
        unit.issues.append(
            _issue(
                "business-rule",
                f"An organisation is named by its IdNat_Struct (system {directory.IDNAT_STRUCT}, "
                "'1' + FINESS) or its FINESS, or is a reference to a directory Organization",
                at,
            )
        )
        return
    unit.struct_ids.setdefault(nid, []).append(at)


async def _check_directory(unit: _Unit) -> None:
    by_id = {k[3:] for k in unit.struct_ids if k.startswith("id:")}
    nids = {k for k in unit.struct_ids if not k.startswith("id:")}
    found_ps, found_struct, known_ids = await directory.find(
        unit.conn, set(unit.ps_ids), nids, by_id
    )
    for nid, places in unit.ps_ids.items():
        if nid not in found_ps:
            for at in places:
                unit.issues.append(
                    _issue(
                        "not-found",
                        f"No active professional {nid} in the directory (Annuaire Santé)",
                        at,
                    )
                )
    for key, places in unit.struct_ids.items():
        ok = key[3:] in known_ids if key.startswith("id:") else key in found_struct
        if not ok:
            name = f"Organization/{key[3:]}" if key.startswith("id:") else key
            for at in places:
                unit.issues.append(
                    _issue("not-found", f"No active organisation {name} in the directory", at)
                )


async def _check_new(unit: _Unit, w: PendingWrite) -> None:
    doc = w.resource
    assert doc is not None
    loc = _loc(w)
    issues = unit.issues
    before = len(issues)
    if doc.get("status") != NEW_STATUS:
        issues.append(
            _issue(
                "business-rule",
                f"A new document entry is '{NEW_STATUS}' (PDSm), not {doc.get('status')!r}",
                f"{loc}.status",
            )
        )
    simplified = is_simplified(doc)
    _require(doc, loc, issues, simplified)
    issues += _codes(doc, loc, simplified)
    subject = _ref_id(doc.get("subject"), "Patient")
    patient_ins: tuple[str, str] | None = None
    if doc.get("subject") is not None and subject is None:
        issues.append(
            _issue("business-rule", "The subject is a Patient reference", f"{loc}.subject")
        )
    elif subject is not None:
        patient = await unit.resource("Patient", subject)
        if patient is None:
            issues.append(_issue("not-found", f"Patient/{subject} is not known", f"{loc}.subject"))
        else:
            decision = may_reference_by_ins(patient)
            if not decision:
                issues.append(
                    _issue(
                        "business-rule",
                        f"rule {decision.rule}: a document is shared only for a patient with a "
                        f"qualified INS; Patient/{subject}: {decision.reason}. To do: "
                        f"{decision.action}, then send the document again",
                        f"{loc}.subject",
                    )
                )
            else:
                ins = ins_from_patient(patient)
                patient_ins = (ins[0].oid, ins[0].value) if ins else None
    _check_unique(unit, w, loc)
    await _authors(unit, doc, loc, subject, simplified)
    await _check_content(unit, w, subject, patient_ins)
    if len(issues) == before:
        await _check_replacement(unit, w, subject)


def _check_unique(unit: _Unit, w: PendingWrite, loc: str) -> None:
    """The document's uniqueId (masterIdentifier) names one entry only."""
    mi = (w.resource or {}).get("masterIdentifier") or {}
    if not isinstance(mi, dict) or not isinstance(mi.get("value"), str):
        return
    key = (mi.get("system"), mi["value"])
    holder = unit.shared.get(key)
    if holder is not None and holder != w.id:
        unit.issues.append(
            _issue(
                "duplicate",
                f"The document {mi['value']} is already shared (DocumentReference/{holder}): "
                "a new version replaces it (relatesTo replaces) with a new uniqueId",
                f"{loc}.masterIdentifier",
            )
        )
    unit.shared.setdefault(key, w.id)  # a second entry of this unit with the same id


async def _check_content(
    unit: _Unit, w: PendingWrite, subject: str | None, patient_ins: tuple[str, str] | None
) -> None:
    doc = w.resource
    assert doc is not None
    loc = _loc(w)
    for i, content in enumerate(doc.get("content") or []):
        att = (content or {}).get("attachment") or {}
        at = f"{loc}.content[{i}].attachment"
        url = att.get("url")
        if not isinstance(url, str):
            continue
        bid = _ref_id(url, "Binary")
        if bid is None:
            unit.issues.append(
                _issue(
                    "business-rule",
                    f"attachment.url must be a Binary of this server (the Bundle's Binary entry), "
                    f"not {url!r}",
                    f"{at}.url",
                )
            )
            continue
        bw = unit.by_key.get(("Binary", bid))
        binary = await unit.resource("Binary", bid)
        if binary is None:
            unit.issues.append(_issue("not-found", f"Binary/{bid} is not known", f"{at}.url"))
            continue
        ref = content_ref(binary)
        if ref is not None:
            size, digest = ref.size, ref.sha1
            data: bytes | None = bw.data if bw is not None else None
        else:
            data = decode_data(binary, bw.where if bw else "")
            size, digest = len(data), sha1(data)
        for name, text in content_mismatches(att, size, digest, f"Binary/{bid}"):
            unit.issues.append(_issue("business-rule", text, f"{at}.{name}"))
        ctype = binary.get("contentType")
        if att.get("contentType") and ctype != att.get("contentType"):
            unit.issues.append(
                _issue(
                    "business-rule",
                    f"attachment.contentType {att.get('contentType')!r} differs from "
                    f"Binary/{bid}'s {ctype!r}",
                    f"{at}.contentType",
                )
            )
        context = binary.get("securityContext")
        if (
            subject is not None
            and bw is not None
            and bw.kind != "delete"
            and bw.resource is not None
        ):
            if context is None:
                # the content is the patient's: its access follows the patient's compartment
                bw.resource["securityContext"] = {"reference": f"Patient/{subject}"}
            elif _ref_id(context, "Patient") != subject:
                unit.issues.append(
                    _issue(
                        "business-rule",
                        f"Binary/{bid}.securityContext names another patient than the document's",
                        f"{bw.where}.resource.securityContext"
                        if bw.where
                        else "Binary.securityContext",
                    )
                )
        if ctype in CDA_CONTENT_TYPES and patient_ins is not None:
            try:
                header = await _cda_header(unit, data, ref, (digest, size))
            except CdaError as exc:
                unit.issues.extend(i.at(at) for i in exc.issues)
                continue
            if header is not None:
                unit.issues.extend(compare_with_metadata(header, doc, patient_ins, loc))


async def _cda_header(
    unit: _Unit, data: bytes | None, ref: ContentRef | None, content: ContentKey
) -> CdaHeader | None:
    """The CDA header of a document's content (raises CdaError): the bytes at hand parsed (the
    unit's own Binary); else read ahead where they were (`read_ahead`: a bulk import's
    workers); else read back from the content store and parsed. None without bytes."""
    if data is None:
        known = taken(content)
        if isinstance(known, CdaError):
            raise known
        if known is not None:
            return known
        if ref is not None and unit.store is not None:
            data = await unit.store.read(ref.key)
    return read_header(data) if data is not None else None


async def _check_replacement(unit: _Unit, w: PendingWrite, subject: str | None) -> None:
    doc = w.resource
    assert doc is not None
    loc = _loc(w)
    replaces = [
        (i, r)
        for i, r in enumerate(doc.get("relatesTo") or [])
        if isinstance(r, dict) and r.get("code") == "replaces"
    ]
    if len(replaces) > 1:
        unit.issues.append(
            _issue(
                "business-rule", "PDSm: a document replaces at most one entry", f"{loc}.relatesTo"
            )
        )
        return
    for i, rel in replaces:
        at = f"{loc}.relatesTo[{i}].target"
        tid = _ref_id(rel.get("target"), "DocumentReference")
        if tid is None or tid == w.id:
            unit.issues.append(
                _issue("business-rule", "The replaced entry is another DocumentReference", at)
            )
            continue
        own = unit.by_key.get(("DocumentReference", tid))
        locked = await find_current(unit.conn, "DocumentReference", tid, lock=True)
        if locked is None or not locked.content:
            unit.issues.append(_issue("not-found", f"DocumentReference/{tid} is not known", at))
            continue
        target = decode(locked.content)
        if not is_record_document(target):
            unit.issues.append(
                _issue(
                    "business-rule",
                    f"DocumentReference/{tid} is not an entry of the shared record: only a "
                    "shared document can be replaced through it",
                    at,
                )
            )
            continue
        if _ref_id(target.get("subject"), "Patient") != subject:
            unit.issues.append(
                _issue(
                    "business-rule", f"DocumentReference/{tid} is another patient's document", at
                )
            )
            continue
        status = target.get("status")
        if status != "current" and not (
            own is not None and own.resource and own.resource.get("status") == "superseded"
        ):
            unit.issues.append(
                _issue(
                    "business-rule",
                    f"DocumentReference/{tid} is {status}: only a current entry can be replaced",
                    at,
                )
            )
            continue
        if not await acts_for_author(unit.conn, unit.access, target):
            raise forbidden(
                f"Only the author of DocumentReference/{tid} or the author's organisation may "
                "replace it",
                at,
            )
        if tid in unit.supersede:
            unit.issues.append(
                _issue(
                    "business-rule",
                    f"DocumentReference/{tid} is replaced twice in this transaction",
                    at,
                )
            )
            continue
        unit.supersede[tid] = (w, target, locked.version)


async def _check_change(unit: _Unit, w: PendingWrite, old: dict[str, Any]) -> None:
    new = w.resource
    assert new is not None
    loc = _loc(w)
    changed = _changed(old, new)
    if changed and unit.access.relinks_patients:
        # identitovigilance (merge / unmerge) moves the entry to the surviving patient record
        changed = _changed(_unlinked(old), _unlinked(new))
    if changed:
        raise _err(
            [
                _issue(
                    "not-supported",
                    "PDSm: only status, securityLabel and the isArchived extension of a document "
                    f"entry may change (changed here: {', '.join(changed)}); to correct anything "
                    "else, publish a replacing document (relatesTo replaces)",
                    f"{loc}.{changed[0]}",
                )
            ],
            405,
        )
    before, after = old.get("status"), new.get("status")
    if before != after:
        if before in FINAL_STATUSES:
            raise _err(
                [
                    _issue(
                        "business-rule",
                        f"A {before} document entry keeps its status",
                        f"{loc}.status",
                    )
                ]
            )
        if after == "superseded":
            replaced = any(
                _ref_id(r.get("target"), "DocumentReference") == w.id
                for x in unit.writes
                if x.rtype == "DocumentReference" and x.resource and x is not w
                for r in x.resource.get("relatesTo") or []
                if isinstance(r, dict) and r.get("code") == "replaces"
            )
            if not replaced:
                raise _err(
                    [
                        _issue(
                            "business-rule",
                            "An entry becomes superseded only with the document that replaces it "
                            "(relatesTo replaces), in the same transaction",
                            f"{loc}.status",
                        )
                    ]
                )
        elif after == "entered-in-error":
            if not await acts_for_author(unit.conn, unit.access, old):
                raise forbidden(
                    f"Only the author of DocumentReference/{w.id} or the author's organisation "
                    "may delete it",
                    f"{loc}.status",
                )
        else:
            raise _err(
                [
                    _issue(
                        "business-rule",
                        f"A document entry goes from current to superseded or entered-in-error, "
                        f"not to {after!r}",
                        f"{loc}.status",
                    )
                ]
            )
    if old.get("securityLabel") != new.get("securityLabel"):
        issues = _label_issues(new, loc)
        if issues:
            raise _err(issues)


def _supersede(unit: _Unit) -> None:
    """Replaced entries become superseded in the same unit of work (checked like any write)."""
    for tid, (by, target, version) in unit.supersede.items():
        if ("DocumentReference", tid) in unit.by_key:
            continue  # the Bundle's own PATCH (ITI-65 UpdateDocumentRefs): checked above
        target["status"] = "superseded"
        write = PendingWrite(
            "update", "DocumentReference", tid, target, if_match=version, where=by.where
        )
        write.owner = by.owner
        unit.writes.append(write)
