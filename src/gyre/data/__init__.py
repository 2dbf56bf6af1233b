"""Data: the versioned lake (Delta tables), the dataset catalog, ingestion and validation."""
