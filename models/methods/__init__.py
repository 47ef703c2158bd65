"""Every method module is imported here; importing registers it (explicit, no discovery magic)."""

from models.methods import (
    dast,  # noqa: F401
    f2lm,  # noqa: F401
    ffp,  # noqa: F401
    flowmem,  # noqa: F401
    gcl,  # noqa: F401
    vadclip,  # noqa: F401
)
