"""Search-index extraction: from a resource to the rows of the idx_* tables."""
