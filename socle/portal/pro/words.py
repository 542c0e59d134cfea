"""What the professional pages say in French: identity statuses (RNIV), the policy's refusals,
and the record's publication refusals, each by the code or reason the engine gives."""

from __future__ import annotations

from typing import Any

# RNIV (Référentiel national d'identitovigilance) statuses, in plain French
STATUSES = {
    "PROV": (
        "Identité provisoire",
        "Identité saisie sans contrôle d'une pièce d'identité et sans INS récupéré : "
        "elle reste à vérifier.",
    ),
    "RECUP": (
        "Identité récupérée",
        "L'INS a été récupéré auprès du téléservice INSi, mais l'identité n'a pas encore été "
        "contrôlée sur une pièce d'identité.",
    ),
    "VALI": (
        "Identité validée",
        "L'identité a été contrôlée sur une pièce d'identité à haut niveau de confiance, mais "
        "l'INS n'a pas encore été récupéré ou vérifié auprès d'INSi.",
    ),
    "QUAL": (
        "Identité qualifiée",
        "L'INS a été récupéré ou vérifié auprès d'INSi et l'identité contrôlée sur une pièce "
        "d'identité : c'est la seule identité dont l'INS peut servir à partager des données.",
    ),
}
SHARE_RULE = (
    "Seul un INS qualifié peut être utilisé pour partager un document ou échanger des données "
    "de santé."
)
SEXES = {"male": "Homme", "female": "Femme", "other": "Autre", "unknown": "Inconnu"}

# The access policy's reasons (socle/auth/policy.py), in the professional's words
REFUSALS = (
    (
        "the patient has blocked this professional",
        "Le patient vous a bloqué : vous ne pouvez pas ouvrir son dossier, même en urgence.",
    ),
    (
        "the patient opposes access, including in emergency",
        "Le patient s'est opposé à l'accès des professionnels à son dossier, y compris en urgence.",
    ),
    (
        "the patient opposes access",
        "Le patient s'est opposé à l'accès des professionnels à son "
        "dossier. Un accès en urgence (bris de glace) reste possible, avec un motif.",
    ),
    (
        "no care relationship",
        "Vous n'avez pas de relation de soins enregistrée avec ce patient "
        "(équipe de soins, séjour en cours dans votre établissement, consentement, médecin "
        "traitant). Un accès en urgence (bris de glace) est possible, avec un motif.",
    ),
    ("hidden", "Ce contenu est masqué pour vous."),
)
HIDDEN_DOCUMENTS = (
    "Certains documents peuvent ne pas apparaître ici : ceux que le patient a masqués aux "
    "professionnels (visibles seulement de leur auteur et du médecin traitant), ceux dont votre "
    "profession ne permet pas la lecture (matrice d'habilitations par profession et type de "
    "document), et ceux réservés au secteur sanitaire si vous exercez dans le secteur social."
)


def refusal(diagnostics: str) -> str:
    for needle, text in REFUSALS:
        if needle in diagnostics:
            return text
    return "Vous n'avez pas accès à ce dossier."


def may_break_glass(diagnostics: str) -> bool:
    return "break-glass with a reason is possible" in diagnostics


# the record's publication rules (socle/record/, socle/identity/sharing.py): the field a refusal
# belongs to, by where it points
FIELD_OF_PATH = (
    ("subject", "patient"),
    ("type", "type"),
    ("category", "classe"),
    ("practiceSetting", "cadre"),
    ("facilityType", "etablissement"),
    ("securityLabel", "confidentialite"),
    ("attachment", "fichier"),
    ("content", "fichier"),
)


def field_of(issue: dict[str, Any]) -> str:
    where = " ".join(str(e) for e in issue.get("expression") or [])
    for needle, name in FIELD_OF_PATH:
        if needle in where:
            return name
    return "fichier"


def publication_message(issue: dict[str, Any]) -> str:
    """A refusal of the record in French; the rule's own words follow, for the integrator."""
    text = str(issue.get("diagnostics") or "")
    low = text.lower()
    if "ins" in low and ("qual" in low or "identity" in low):
        head = (
            "L'identité de ce patient n'est pas qualifiée : "
            + SHARE_RULE[0].lower()
            + SHARE_RULE[1:]
        )
    elif "already shared" in low:
        head = (
            "Ce document est déjà dans le dossier partagé : pour le corriger, publiez une "
            "nouvelle version qui le remplace."
        )
    elif "cda" in low or "clinicaldocument" in low or "xml" in low:
        head = "Le document CDA ne respecte pas les règles d'en-tête du dossier partagé."
    elif "value set" in low or "code" in low:
        head = "Cette valeur n'est pas dans la liste attendue."
    elif "too large" in low or "size" in low:
        head = "Le fichier est trop volumineux."
    else:
        head = "Le dossier partagé refuse ce document."
    return f"{head} (Règle : {text})" if text else head
