"""Saved searches of this centre and the alerts the hub routes for them."""
