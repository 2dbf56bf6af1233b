"""The feature store: definitions, point-in-time retrieval, the online store, materialization."""
