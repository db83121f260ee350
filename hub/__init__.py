"""The federation hub: indexes every centre's events and serves federated search."""
