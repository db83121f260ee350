"""The federation index: ingest of centre events, dead letters and federated search."""
