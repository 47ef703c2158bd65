"""Alerts: the per-camera state machine (`machine`) and optional webhook delivery (`webhook`)."""
