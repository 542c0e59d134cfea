"""What the patient reads about who accessed his record: people in words, times in Paris time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")


def paris_time(when: dt.datetime) -> str:
    """``12/03/2026 à 14:05`` in Paris time (summer and winter time)."""
    return f"{when.astimezone(PARIS):%d/%m/%Y à %H:%M}"


def _name(resource: Mapping[str, Any]) -> str:
    for n in resource.get("name") or []:
        if not isinstance(n, dict):
            continue
        if isinstance(n.get("text"), str) and n["text"].strip():
            return str(n["text"]).strip()
        given = " ".join(g for g in n.get("given") or [] if isinstance(g, str))
        family = n.get("family") if isinstance(n.get("family"), str) else ""
        full = f"{given} {family}".strip()
        if full:
            return full
    return ""


def _professions(resource: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for q in resource.get("qualification") or []:
        code = (q or {}).get("code") or {} if isinstance(q, dict) else {}
        label = code.get("text") if isinstance(code.get("text"), str) else None
        for c in code.get("coding") or []:
            if not label and isinstance(c, dict) and isinstance(c.get("display"), str):
                label = c["display"]
        if label and label not in out:
            out.append(label)
    return out


def professional_label(practitioner: Mapping[str, Any] | None) -> str:
    """``Claire Martin (Médecin)``; ``un professionnel de santé`` when nothing is known."""
    if not practitioner:
        return "un professionnel de santé"
    name = _name(practitioner) or "un professionnel de santé"
    professions = _professions(practitioner)
    return f"{name} ({', '.join(professions)})" if professions else name


# Why, in the patient's words: the text of AuditEvent purposeOfUse (v3 ActReason codes).
PURPOSE_TEXT = {
    "TREAT": "soins",
    "ETREAT": "soins en urgence (bris de glace)",
    "PATRQT": "à la demande du patient",
    "HOPERAT": "fonctionnement de l'établissement",
    "PUBHLTH": "santé publique",
    "HSYSADMIN": "administration du système",
}
