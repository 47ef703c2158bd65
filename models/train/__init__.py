"""Offline training: YAML config + overrides, method objectives, resumable checkpoints, calibration, registration."""
