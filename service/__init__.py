"""vigil's runtime: ingesters, workers and the API talking through Redis."""
