"""Datasets, video readers, ground truth and the one preprocessing function shared by training, eval and the service."""
