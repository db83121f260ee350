"""Webhooks: backbone events delivered to integrators' HTTPS endpoints, signed, retried."""
