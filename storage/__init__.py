"""Object store, content-addressed assets, and (later) lineage, cache and warehouse."""
