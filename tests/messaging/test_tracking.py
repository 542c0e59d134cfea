"""A sent message's status from the acknowledgements it got (real MDNs built and read with the
`email` package) and from the relay's refusal: failure first, then read, then delivered."""

from __future__ import annotations

import pytest

from socle.messaging.mdn import as_bytes, build_mdn
from socle.messaging.refusals import ErrorCode
from socle.messaging.tracking import Status, disposition_of, status_of

from .world import PRO_A, PRO_B, message


def _mdn(error: ErrorCode | None = None, displayed: bool = False) -> bytes:
    original = message(PRO_A, [PRO_B], Disposition_Notification_To=PRO_A)
    raw = as_bytes(build_mdn(original, PRO_B, error, "detail"))
    # a person's mail client acknowledges reading with `displayed` (Socle never builds one)
    return raw.replace(b"; processed", b"; displayed") if displayed else raw


def test_an_mdn_is_read_as_its_disposition_and_error() -> None:
    assert disposition_of(_mdn()) == ("processed", False)
    assert disposition_of(_mdn(ErrorCode.PATIENT_UNKNOWN)) == ("processed", True)
    assert disposition_of(_mdn(displayed=True)) == ("displayed", False)
    assert disposition_of(as_bytes(message(PRO_B, [PRO_A]))) is None  # not an MDN: ignored


@pytest.mark.parametrize(
    ("mdns", "relay_error", "status"),
    [
        ([], None, Status.SENT),
        ([_mdn()], None, Status.DELIVERED),
        ([_mdn(), _mdn(displayed=True)], None, Status.READ),
        ([_mdn(displayed=True), _mdn(ErrorCode.INS_INCOMPLETE)], None, Status.FAILED),
        ([_mdn()], "550 5.1.1 no such user", Status.FAILED),
    ],
)
def test_the_status_of_a_sent_message(
    mdns: list[bytes], relay_error: str | None, status: Status
) -> None:
    found = [d for d in (disposition_of(m) for m in mdns) if d is not None]
    assert status_of(found, relay_error) is status
