"""Snippet features of frozen backbones, computed once per video and cached as safetensors."""
