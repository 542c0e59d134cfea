"""The codes the coordination service relies on, and the terminology it loads at start-up.

Socle's own code systems (canonical under Socle's base URL): the DAC workflow and intensity
levels (``coordination``), the PPCS nomenclature of needs, objectives and actions (``ppcs``,
HAS 2019: the PPCS "will only be used if dematerialised", with a nomenclature) and the roles a
circle gives beyond the ANS ones (``circle-role``: the coordinator, the plan's referent). The
ANS ones it draws on: TRE_R259 (PCP = médecin traitant), TRE_R260 (caregiver, trusted person,
legal representative…) for CareTeam roles, JDV_J23 (TRE_R234) for liaison-note types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

BASE = "https://socle.example.org/fhir"
COORDINATION = f"{BASE}/CodeSystem/coordination"
PPCS = f"{BASE}/CodeSystem/ppcs"
CIRCLE_ROLE = f"{BASE}/CodeSystem/circle-role"
R259 = "https://mos.esante.gouv.fr/NOS/TRE_R259-HL7ParticipationFunction/FHIR/TRE-R259-HL7ParticipationFunction"
R260 = "https://mos.esante.gouv.fr/NOS/TRE_R260-HL7RoleClass/FHIR/TRE-R260-HL7RoleClass"
R234 = "https://mos.esante.gouv.fr/NOS/TRE_R234-TypeNote/FHIR/TRE-R234-TypeNote"
J23 = "https://mos.esante.gouv.fr/NOS/JDV_J23-TypeNoteCahierLiaison-CISIS/FHIR/JDV-J23-TypeNoteCahierLiaison-CISIS"
CIRCLE_ROLES_VS = f"{BASE}/ValueSet/circle-roles"

# the ANS guides' profiles and extension
CDS_CARETEAM = "https://interop.esante.gouv.fr/ig/fhir/cds/StructureDefinition/cds-ihe-careteam"
CDS_RELATED_PERSON = (
    "https://interop.esante.gouv.fr/ig/fhir/cds/StructureDefinition/cds-fr-related-person"
)
CDL_NOTE = "https://interop.esante.gouv.fr/ig/fhir/cdl/StructureDefinition/cdl-document-reference"
IS_EMERGENCY = "https://interop.esante.gouv.fr/ig/fhir/cdl/StructureDefinition/cdl-ext-is-emergency"

QUESTIONNAIRE_ID = "dac-evaluation-multidimensionnelle"

WORKFLOW = {
    "demande-appui": "Demande d'appui à la coordination",
    "inclusion": "Inclusion et recueil du consentement",
    "evaluation": "Évaluation multidimensionnelle",
    "elaboration-ppcs": "Élaboration du PPCS",
    "suivi": "Suivi de la mise en œuvre",
    "reevaluation": "Réévaluation du PPCS",
    "cloture": "Clôture de l'accompagnement",
    "invitation-cercle": "Invitation à rejoindre le cercle de soins",
    "conversation-cercle": "Conversation de l'équipe du cercle de soins",
    "accompagnement-dac": "Accompagnement par le DAC",
    "ppcs": "Plan personnalisé de coordination en santé",
    "partage-ppcs": "Consentement au partage du PPCS avec le cercle de soins",
    "intensite-ponctuel": "Intensité : appui ponctuel",
    "intensite-soutenu": "Intensité : appui soutenu",
    "intensite-intensif": "Intensité : appui intensif",
}
INTENSITIES = ("intensite-ponctuel", "intensite-soutenu", "intensite-intensif")
# regional pathways (PlanDefinitions, socle/coordination/pathways.py): the CarePlan category of
# each shipped pathway, the steps no other code names, and the alerts their thresholds raise
PATHWAYS = {
    "parcours-iatroprev": "Parcours Iatroprev : iatrogénie médicamenteuse du sujet âgé",
    "parcours-nutriage": "Parcours Nutriage : dénutrition du sujet âgé",
    "parcours-dac": "Parcours d'appui à une situation complexe (DAC)",
    "conciliation-medicamenteuse": "Conciliation médicamenteuse",
    "revue-pharmaceutique": "Revue pharmaceutique (bilan partagé de médication)",
    "decision-prescripteur": "Décision du prescripteur sur les propositions",
    "suivi-3-mois": "Suivi à 3 mois",
    "depistage-denutrition": "Dépistage de la dénutrition (poids, IMC, albuminémie)",
    "evaluation-dietetique": "Évaluation diététique",
    "plan-soins-nutritionnel": "Plan de soins nutritionnel",
    "suivi-ponderal": "Suivi pondéral",
    "alerte-perte-poids-1-mois": "Alerte : perte de poids ≥ 5 % en un mois",
    "alerte-perte-poids-6-mois": "Alerte : perte de poids ≥ 10 % en six mois",
    "alerte-imc-bas": "Alerte : IMC < 21 à 70 ans ou plus",
    "alerte-albumine-basse": "Alerte : albuminémie < 35 g/L",
}

NEEDS = {
    "besoin-sante-somatique": "Santé somatique",
    "besoin-sante-psychique": "Santé psychique et cognition",
    "besoin-medicaments": "Médicaments (iatrogénie, observance)",
    "besoin-nutrition": "Nutrition",
    "besoin-autonomie": "Autonomie fonctionnelle",
    "besoin-aidant": "Soutien de l'aidant",
    "besoin-vie-sociale": "Vie sociale, isolement",
    "besoin-logement": "Logement et environnement",
    "besoin-droits": "Droits et ressources",
    "besoin-coordination": "Coordination des intervenants",
    "besoin-fin-de-vie": "Fin de vie",
}
OBJECTIVES = {
    "objectif-maintien-domicile": "Permettre le maintien à domicile",
    "objectif-stabiliser-sante": "Stabiliser l'état de santé",
    "objectif-prevenir-chutes": "Prévenir les chutes",
    "objectif-observance": "Améliorer l'observance des traitements",
    "objectif-prevenir-denutrition": "Prévenir la dénutrition",
    "objectif-prevenir-hospitalisation": "Éviter une hospitalisation ou une réhospitalisation",
    "objectif-soutenir-aidant": "Soutenir et relayer l'aidant",
    "objectif-rompre-isolement": "Rompre l'isolement",
    "objectif-adapter-logement": "Adapter le logement",
    "objectif-ouvrir-droits": "Ouvrir ou maintenir les droits",
    "objectif-projet-de-vie": "Respecter le projet de vie et les préférences de la personne",
}
ACTIONS = {
    # HAS 2019: prevention first, then care, then support
    "action-prevention-bilan-chute": "Prévention : bilan du risque de chute",
    "action-prevention-revue-medicaments": "Prévention : revue de la médication",
    "action-prevention-depistage-nutrition": "Prévention : dépistage de la dénutrition",
    "action-soin-passage-infirmier": "Soins : passages infirmiers à domicile",
    "action-soin-kinesitherapie": "Soins : kinésithérapie",
    "action-soin-consultation-specialisee": "Soins : consultation spécialisée",
    "action-soin-soins-palliatifs": "Soins : équipe de soins palliatifs",
    "action-accompagnement-aide-domicile": "Accompagnement : aide à domicile",
    "action-accompagnement-portage-repas": "Accompagnement : portage de repas",
    "action-accompagnement-teleassistance": "Accompagnement : téléassistance",
    "action-accompagnement-accueil-jour": "Accompagnement : accueil de jour",
    "action-accompagnement-hebergement-temporaire": "Accompagnement : hébergement temporaire",
    "action-accompagnement-repit-aidant": "Accompagnement : répit de l'aidant",
    "action-droits-apa": "Droits : demande d'APA",
    "action-droits-protection-juridique": "Droits : mesure de protection juridique",
    "action-logement-amenagement": "Logement : aménagement du domicile",
    "procedure-alerte": "Procédure d'alerte en cas de problème intercurrent",
}
CIRCLE = {
    "COORD": "Coordonnateur de parcours",
    "REF": "Référent du PPCS",
    "MEMBRE": "Membre du cercle de soins",
}
R259_CODES = {"PCP": "Médecin traitant", "ATTPHYS": "Référent - Responsable du patient"}
R260_CODES = {
    "ECON": "Personne à prévenir en cas d'urgence",
    "GUARD": "Responsable légal",
    "QUAL": "Personne de confiance",
    "POLHOLD": "Assuré ouvrant droit",
    "CON": "Informateur",
    "CAREGIVER": "Aidant",
    "PAT": "Aidé",
    "PROV": "Professionnel de santé",
    "AGNT": "Professionnel caractérisé par son rôle",
    "NOK": "Personne de confiance",
}
NOTE_TYPES = {
    "DEM-AVIS": "Demande d'avis",
    "GEN": "Note générale",
    "INST": "Instruction",
    "INTERV": "Note d'intervention",
    "OBS": "Note d'observation",
}

# the codes our own systems hold: a coding of one of them must be one of these
KNOWN: Mapping[str, Mapping[str, str]] = {
    COORDINATION: {**WORKFLOW, **PATHWAYS},
    PPCS: {**NEEDS, **OBJECTIVES, **ACTIONS},
    CIRCLE_ROLE: CIRCLE,
}
CIRCLE_ROLE_CODES: Mapping[str, Mapping[str, str]] = {
    R259: R259_CODES,
    R260: R260_CODES,
    CIRCLE_ROLE: CIRCLE,
}


def _code_system(
    url: str, name: str, title: str, concepts: Mapping[str, str], content: str = "complete"
) -> dict[str, Any]:
    return {
        "resourceType": "CodeSystem",
        "url": url,
        "name": name,
        "title": title,
        "status": "active",
        "content": content,
        "concept": [{"code": c, "display": d} for c, d in concepts.items()],
    }


def _value_set(url: str, name: str, title: str, *parts: tuple[str, Mapping[str, str]]) -> dict:
    return {
        "resourceType": "ValueSet",
        "url": url,
        "name": name,
        "title": title,
        "status": "active",
        "compose": {
            "include": [
                {"system": s, "concept": [{"code": c, "display": d} for c, d in codes.items()]}
                for s, codes in parts
            ]
        },
    }


def terminology() -> list[dict[str, Any]]:
    """Loaded into the terminology service at start-up (``$expand``, ``$validate-code``)."""
    steps = {c: d for c, d in WORKFLOW.items() if c not in INTENSITIES}
    return [
        _code_system(
            COORDINATION,
            "SocleCoordination",
            "Coordination (DAC, PPCS, parcours)",
            KNOWN[COORDINATION],
        ),
        _code_system(PPCS, "SoclePPCS", "PPCS : besoins, objectifs, actions", KNOWN[PPCS]),
        _code_system(CIRCLE_ROLE, "SocleCircleRole", "Rôles dans le cercle de soins", CIRCLE),
        _code_system(R259, "TRE_R259_HL7ParticipationFunction", "TRE_R259", R259_CODES, "fragment"),
        _code_system(R260, "TRE_R260_HL7RoleClass", "TRE_R260", R260_CODES, "fragment"),
        _code_system(R234, "TRE_R234_TypeNote", "TRE_R234-TypeNote", NOTE_TYPES, "fragment"),
        _value_set(
            CIRCLE_ROLES_VS,
            "SocleCircleRoles",
            "Rôles des participants d'un cercle de soins (CDS + coordination)",
            (R259, {"PCP": R259_CODES["PCP"]}),
            (R260, R260_CODES),
            (CIRCLE_ROLE, CIRCLE),
        ),
        _value_set(J23, "JDV_J23_TypeNoteCahierLiaison_CISIS", "JDV_J23", (R234, NOTE_TYPES)),
        _value_set(f"{BASE}/ValueSet/ppcs-needs", "PPCSNeeds", "PPCS : besoins", (PPCS, NEEDS)),
        _value_set(
            f"{BASE}/ValueSet/ppcs-objectives",
            "PPCSObjectives",
            "PPCS : objectifs",
            (PPCS, OBJECTIVES),
        ),
        _value_set(
            f"{BASE}/ValueSet/ppcs-actions", "PPCSActions", "PPCS : actions", (PPCS, ACTIONS)
        ),
        _value_set(
            f"{BASE}/ValueSet/dac-steps",
            "DACSteps",
            "Étapes du parcours DAC",
            (COORDINATION, steps),
        ),
        _value_set(
            f"{BASE}/ValueSet/dac-intensity",
            "DACIntensity",
            "Intensité de l'appui DAC",
            (COORDINATION, {c: WORKFLOW[c] for c in INTENSITIES}),
        ),
    ]
