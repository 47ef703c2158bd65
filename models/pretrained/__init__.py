"""Conversion and verified loading of pretrained weights that ship outside the project (by path, never downloaded)."""
