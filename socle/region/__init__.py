"""Deterministic synthetic French region (Corse, INSEE region 94) as FHIR R4 resources.

`socle.region.generate.iter_resources` / `iter_bundles` stream the region;
`socle generate` writes it.
"""
