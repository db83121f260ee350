"""Alembic migrations (package so wheels ship them)."""
