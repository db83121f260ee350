"""Matches the hub routed to this centre, and the centre's answers to them."""
