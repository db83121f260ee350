"""Cross-regional matching: demands against achievements, explained and routed."""
