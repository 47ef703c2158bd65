"""Errors raised by the method registry, model store, datasets and trainer."""


class VigilModelError(Exception):
    """Base class for every error of the `models` package."""


class UnknownMethodError(VigilModelError, KeyError):
    """A method name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateMethodError(VigilModelError):
    """Two methods registered under one name."""


class ModelNotFoundError(VigilModelError, LookupError):
    """A model reference (name, name@version, name@alias) that the store does not hold."""


class IncompatibleCheckpointError(VigilModelError):
    """Weights or a checkpoint that do not match the configuration they are loaded into, or are corrupt."""


class UnsafeWeightsError(VigilModelError):
    """Weights offered in an executable format (pickle) where only safetensors are accepted."""


class DatasetError(VigilModelError):
    """A dataset path or layout that cannot be read, or labels that do not match the frames."""
