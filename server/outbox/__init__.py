"""Transactional outbox: events are written with the change that causes them and published
by one relay. The node publishes record events through it, the hub its match routes."""
