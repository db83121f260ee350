"""The centres of the federation as the hub sees them: registry, liveness, counts, lag."""
