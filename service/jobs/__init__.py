"""Batch re-scoring jobs: a video (uploaded or under the footage root) scored by the live workers, results on disk."""
