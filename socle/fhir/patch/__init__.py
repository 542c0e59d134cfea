"""PATCH bodies: JSON Patch (RFC 6902), JSON Merge Patch (RFC 7386) and FHIRPath Patch."""

from .fhirpath_patch import apply_fhirpath_patch
from .json_patch import apply_json_patch, apply_merge_patch

__all__ = ["apply_fhirpath_patch", "apply_json_patch", "apply_merge_patch"]
