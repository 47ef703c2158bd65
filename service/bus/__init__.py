"""The Redis bus: key names (`keys`), connections (`client`) and the only serialisation code (`topics`)."""
