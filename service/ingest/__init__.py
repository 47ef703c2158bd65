"""The ingester: video sources -> windows at a model's input spec -> the Redis bus (`vigil ingest`)."""
