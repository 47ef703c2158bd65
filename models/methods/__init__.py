"""Every method module is imported here; importing registers it (explicit, no discovery magic)."""
from models.methods import dast  # noqa: F401
