"""Transactional outbox: events are written with the record and published by one relay."""
