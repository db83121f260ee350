"""A centre's node: owns the centre's records, publishes them, answers the hub."""
