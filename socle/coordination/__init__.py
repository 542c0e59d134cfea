"""Coordination of complex situations (e-parcours, DAC): the care circle, the shared plan
(PPCS), the DAC workflow, liaison notes and the life line (docs/coordination.md)."""
