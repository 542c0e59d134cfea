"""The identity service (INS, RNIV statuses, INSi, identitovigilance); the package exports the
French NIR / NIA (matricule INS) structure and key."""

from .nir import check_nir, is_valid_nir, nir_key

__all__ = ["check_nir", "is_valid_nir", "nir_key"]
