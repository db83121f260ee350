"""Bearer tokens of this node: roles, stored as hashes, issued and revoked by admins."""
