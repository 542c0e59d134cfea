"""The terminology service: CodeSystems, ValueSets and ConceptMaps indexed in their own tables
(`store.py`, derived from the stored resources in their unit of work, or loaded from packages:
`startup.py`, `packages.py`), and the R4 terminology operations (`operations.py`) over them.
`service.Terminology` is the one API other code checks codes with."""
