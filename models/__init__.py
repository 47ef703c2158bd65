"""vigil's methods, model registry and offline training: pure PyTorch, never imports `service`."""

from models.registry import MethodSpec, create_method, get_method, list_methods, register_method
from models.types import InputSpec

__all__ = ["InputSpec", "MethodSpec", "create_method", "get_method", "list_methods", "register_method"]
