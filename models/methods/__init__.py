"""Every method module is imported here; importing registers it (explicit, no discovery magic)."""
from models.methods import dast  # noqa: F401
from models.methods import ffp  # noqa: F401
from models.methods import f2lm  # noqa: F401
from models.methods import gcl  # noqa: F401
