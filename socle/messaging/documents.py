"""What the delivery does with the documents a message carries (fr-documents §3.3-3.5):

* `unpack`: each `IHE_XDM.ZIP` attachment is read by `xdm.read_xdm` within the safety limits
  (`safety.py`) before anything is written; a refused archive (zip bomb, unsafe path, DTD,
  hash mismatch…) is a `Refusal` with its MDN code, and none of its content is stored;
* `file_for`: filing a message's XDM subsets to the shared record (`filing.file_package`) as
  one local recipient mailbox, with that mailbox owner's rights through the one access policy
  (audited): an application (`APP`) or organisational (`ORG`) mailbox as a system client of its
  organisation, a personal (`PER`) one as its professional (national id ``8`` + RPPS). A
  message whose `X-MSS-INS` says the INS is not qualified (`N`) is not filed (905);
* `acknowledgement`: the MDN (RFC 8098, `mdn.build_mdn`) a recipient mailbox sends back when the
  message asks for one (`Disposition-Notification-To`), with the integration status, the
  original `IHE_XDM.ZIP` and PDF re-attached.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from email.message import Message
from email.utils import parseaddr
from typing import Any

from ..auth.enforcement import AuditServices, PolicyAccess
from ..auth.scopes import parse_scopes
from ..auth.tokens import Principal, Role
from ..fhir.access import Access
from ..fhir.engine import Engine
from . import mdn
from .filing import file_package
from .headers import INS, read_headers
from .intake import Part
from .mailboxes import FilingRule, Mailbox
from .refusals import ErrorCode, Reason, Refusal
from .safety import DEFAULT_LIMITS, Limits
from .xdm import FILE_NAME, read_xdm
from .xds import XdmPackage

log = logging.getLogger("socle.messaging")

# the kinds of mailbox that may file what they receive to the shared record
FILING_KINDS = frozenset({"PER", "ORG", "APP"})


def is_xdm(part: Part) -> bool:
    """An IHE XDM archive: the attachment named `IHE_XDM.ZIP` (any case), as MSSanté sends it."""
    return part.filename.rsplit("/", 1)[-1].upper() == FILE_NAME


@dataclass(frozen=True)
class Unpacked:
    """One `IHE_XDM.ZIP` attachment: its subsets, or why it was refused."""

    part: Part
    packages: tuple[XdmPackage, ...] = ()
    refusal: Refusal | None = None


def unpack(parts: list[Part], limits: Limits = DEFAULT_LIMITS) -> dict[int, Unpacked]:
    """The XDM attachments among `parts` (by index), each read or refused; never raises."""
    out: dict[int, Unpacked] = {}
    for n, part in enumerate(parts):
        if not is_xdm(part):
            continue
        try:
            out[n] = Unpacked(part, tuple(read_xdm(part.data, limits)))
        except Refusal as refusal:
            log.info("IHE_XDM.ZIP refused: %s", refusal)
            out[n] = Unpacked(part, refusal=refusal)
    return out


@dataclass
class Outcome:
    """What came of one recipient's integration of the message's documents: the
    DocumentReferences filed to the record, or the refusal (its MDN code), or neither when the
    documents were not to be filed by this mailbox."""

    filed: dict[str, str] = field(default_factory=dict)  # uniqueId (urn:oid:…) → id
    code: str | None = None  # 900-906
    reason: str | None = None
    detail: str = ""
    attempted: bool = False

    @classmethod
    def refused(cls, refusal: Refusal) -> Outcome:
        return cls(
            code=refusal.error.code,
            reason=refusal.reason.value,
            detail=refusal.detail,
            attempted=True,
        )

    @property
    def error(self) -> ErrorCode | None:
        return ErrorCode.of(self.code) if self.code else None

    def as_json(self) -> dict[str, Any]:
        return {
            "filed": self.filed,
            "code": self.code,
            "reason": self.reason,
            "detail": self.detail,
            "attempted": self.attempted,
        }

    @classmethod
    def of_json(cls, value: Any) -> Outcome:
        if not isinstance(value, dict):
            return cls()
        return cls(
            filed={str(k): str(v) for k, v in (value.get("filed") or {}).items()},
            code=value.get("code"),
            reason=value.get("reason"),
            detail=str(value.get("detail") or ""),
            attempted=bool(value.get("attempted")),
        )


def mailbox_access(mailbox: Mailbox, services: AuditServices, issuer: str) -> PolicyAccess | None:
    """The Access of a mailbox's owner, as its own token would establish it: a system client of
    the organisation (``ORG``/``APP``), the professional (``PER``, by national id and
    fhirUser), or the patient (``PAT``: what the patient may read, never a document invisible
    to him). The one policy then decides (care relationship, organisation) and audits."""
    subject = f"mailbox:{mailbox.address}"
    if mailbox.kind in ("ORG", "APP"):
        principal = Principal(
            subject=subject,
            issuer=issuer,
            role=Role.SYSTEM,
            scopes=parse_scopes("system/*.cruds"),
            client_id=subject,
            organization=mailbox.owner,
        )
    elif mailbox.kind == "PER" and mailbox.identifier:
        principal = Principal(
            subject=subject,
            issuer=issuer,
            role=Role.PROFESSIONAL,
            scopes=parse_scopes("user/*.cruds"),
            fhir_user=mailbox.owner,
            national_id="8" + mailbox.identifier,
            sector="health",
        )
    elif mailbox.kind == "PAT" and mailbox.patient:
        principal = Principal(
            subject=subject,
            issuer=issuer,
            role=Role.PATIENT,
            scopes=parse_scopes("patient/*.rs"),
            fhir_user=mailbox.owner,
            patient=mailbox.patient,
        )
    else:
        return None
    return PolicyAccess(principal, services)


async def file_for(
    engine: Engine,
    access: Access,
    message: Message,
    unpacked: dict[int, Unpacked],
    rule: FilingRule | None = None,
) -> Outcome:
    """File every XDM subset of the message to the record as `access`: all, or stop at the
    first refusal (a subset is filed atomically; the sender learns the first error). With a
    `rule` listing document types, a subset with a document of another type is not filed."""
    refused = [u.refusal for u in unpacked.values() if u.refusal is not None]
    if refused:
        return Outcome.refused(refused[0])
    packages = [
        pkg
        for u in unpacked.values()
        for pkg in u.packages
        if rule is None
        or all(
            rule.files_type(d.entry.type_code.code if d.entry.type_code else None)
            for d in pkg.documents
        )
    ]
    if not packages:
        return Outcome()
    if read_headers(message).ins_qualified is False:
        return Outcome.refused(
            Refusal(
                Reason.INS_NOT_QUALIFIED,
                f"the message says the INS is not qualified ({INS}: N): not filed",
            )
        )
    outcome = Outcome(attempted=True)
    for pkg in packages:
        try:
            filed = await file_package(engine, access, pkg)
        except Refusal as refusal:
            done = outcome.filed
            outcome = Outcome.refused(refusal)
            outcome.filed = done
            return outcome
        for f in filed:
            master = (f.document_reference.get("masterIdentifier") or {}).get("value")
            outcome.filed[str(master or f.id)] = f.id
    return outcome


def _reattached(parts: list[Part]) -> tuple[mdn.Attachment, ...]:
    """The original IHE_XDM.ZIP and PDF copies, as the MDN re-attaches them."""
    return tuple(
        mdn.Attachment(p.filename, "application/zip" if is_xdm(p) else p.content_type, p.data)
        for p in parts
        if is_xdm(p) or p.content_type == "application/pdf"
    )


def acknowledgement(
    original: Message, recipient: str, outcome: Outcome, parts: list[Part]
) -> Message | None:
    """The MDN `recipient` sends back for `original`, None when none is asked for (or the
    original is itself an automatic answer: never answer an answer)."""
    if mdn.requested_by(original) is None:
        return None
    if str(original.get("Auto-Submitted") or "no").strip().lower() != "no":
        return None
    if original.get_content_type() == "multipart/report":
        return None
    return mdn.build_mdn(
        original, recipient, outcome.error, outcome.detail, attachments=_reattached(parts)
    )


def should_file(mailbox: Mailbox, original: Message) -> bool:
    """Whether a recipient mailbox files the message's documents, by its filing rule
    (`mailboxes.FilingRule`): by default an application mailbox (the hospital's integration
    platform) always, a personal or organisational one when the message asks for its
    integration status (`Disposition-Notification-To`); an operator may set `always`, `asked`
    or `never` and the senders it files from. Never an automatic answer (an MDN re-attaches
    the documents it reports on)."""
    rule = mailbox.filing_rule
    if mailbox.kind not in FILING_KINDS or rule.mode == "never":
        return False
    if not rule.files_from(parseaddr(str(original.get("From") or ""))[1]):
        return False
    if original.get_content_type() == "multipart/report":
        return False  # an acknowledgement re-attaches the documents it answers for: not filed
    if str(original.get("Auto-Submitted") or "no").strip().lower() != "no":
        return False
    return rule.mode == "always" or mdn.requested_by(original) is not None
