"""Saved searches of the centres, and alerts for new records that fit them."""
