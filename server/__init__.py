"""Plumbing shared by the node and the hub: database engines, migrations, auth, logging."""
