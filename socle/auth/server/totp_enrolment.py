"""What an account is shown when it adds its new TOTP secret to an authenticator app: the
``otpauth://`` URI as a QR code (inline SVG drawn server-side: no script, no image request),
the URI as a link (for the phone itself) and the secret grouped by 4, to type or read aloud.

Used by the staff's first login (``flows/operator_login.py``) and the patient's activation
(``socle/portal/activation.py``); the template is ``socle/web/templates/totp_enrolment.html``.
"""

from __future__ import annotations

from dataclasses import dataclass

import qrcode
from markupsafe import Markup

from .totp import provisioning_uri


@dataclass(frozen=True)
class Enrolment:
    uri: str
    grouped_secret: str  # "ABCD EFGH …"
    qr_svg: Markup


def grouped(secret: str) -> str:
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def qr_matrix(text: str) -> list[list[bool]]:
    """The QR code's modules (True: dark), with a 4-module quiet zone, error correction M."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(text)
    code.make(fit=True)
    return [list(row) for row in code.get_matrix()]


def qr_svg(text: str, label: str) -> Markup:
    """The QR code as an SVG image: one path of unit squares on a white ground, named for
    assistive technologies (``role="img"`` and a title)."""
    matrix = qr_matrix(text)
    size = len(matrix)
    squares = "".join(
        f"M{x},{y}h1v1h-1z" for y, row in enumerate(matrix) for x, dark in enumerate(row) if dark
    )
    # Numbers and the escaped label only: nothing of the caller's text reaches it unescaped.
    return Markup(  # noqa: S704
        f'<svg xmlns="http://www.w3.org/2000/svg" class="socle-qr" role="img"'
        f' aria-labelledby="qr-titre" viewBox="0 0 {size} {size}" width="{size * 5}"'
        f' height="{size * 5}" shape-rendering="crispEdges">'
        f'<title id="qr-titre">{Markup.escape(label)}</title>'
        f'<rect width="{size}" height="{size}" fill="#fff"/>'
        f'<path fill="#000" d="{squares}"/></svg>'
    )


def enrolment(secret: str, account: str) -> Enrolment:
    uri = provisioning_uri(secret, account)
    label = "QR code de la clé à ajouter dans votre application d'authentification"
    return Enrolment(uri, grouped(secret), qr_svg(uri, label))
