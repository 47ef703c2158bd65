"""Models the worker serves: resolve refs (re-resolving aliases every few seconds), load, cache by version.

A model without a calibration in its card is refused: the worker publishes calibrated [0, 1] scores only.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

import torch

from models.base import AnomalyMethod
from models.card import Calibration, ModelCard
from models.errors import VigilModelError
from models.io import load_model
from models.store import ModelStore
from service.errors import ModelUnavailableError
from service.metrics import MODEL_LOADS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    ref: str  # resolved name@version
    method: AnomalyMethod
    card: ModelCard
    calibration: Calibration


class ModelCache:
    """Loaded models by resolved version (LRU, `capacity` at most) and alias resolutions (refreshed)."""

    def __init__(self, store: ModelStore, device: torch.device, alias_refresh_s: float, capacity: int = 4) -> None:
        self.store, self.device = store, device
        self.alias_refresh_s, self.capacity = alias_refresh_s, capacity
        self._resolved: dict[str, tuple[str, float]] = {}  # ref -> (name@version, monotonic time resolved)
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._calibrations: dict[str, Calibration] = {}  # versions never change, so this never expires

    def resolve(self, ref: str) -> str:
        """ref (name, name@alias, name@v3) -> name@version; aliases are re-read after `alias_refresh_s`."""
        cached = self._resolved.get(ref)
        now = time.monotonic()
        if cached is not None and now - cached[1] < self.alias_refresh_s:
            return cached[0]
        try:
            version = self.store.resolve(ref).ref
        except (VigilModelError, ValueError, OSError) as e:
            msg = f"cannot serve model {ref!r}: {e}"
            raise ModelUnavailableError(msg) from e
        if cached is not None and cached[0] != version:
            log.info("model %s moved from %s to %s; windows now go to the new version", ref, cached[0], version)
        self._resolved[ref] = (version, now)
        return version

    def get(self, ref: str) -> LoadedModel:
        """The model a ref currently points at, loading it on first use."""
        version = self.resolve(ref)
        model = self._models.get(version)
        if model is not None:
            self._models.move_to_end(version)
            return model
        model = self._load(version)
        self._models[version] = model
        while len(self._models) > self.capacity:
            evicted, _ = self._models.popitem(last=False)
            log.info("unloaded model %s (cache holds %d)", evicted, self.capacity)
        return model

    def _load(self, version: str) -> LoadedModel:
        started = time.monotonic()
        try:
            method, card, _ = load_model(self.store, version, device=self.device)
        except (VigilModelError, ValueError, OSError) as e:
            msg = f"cannot load model {version}: {e}"
            raise ModelUnavailableError(msg) from e
        calibration = self._require_calibration(version, card)
        MODEL_LOADS.labels(version).inc()
        log.info("loaded model %s on %s in %.2f s", version, self.device, time.monotonic() - started)
        return LoadedModel(ref=version, method=method, card=card, calibration=calibration)

    def calibration(self, version: str) -> Calibration:
        """The calibration of a resolved version, from its card alone (no weights loaded)."""
        cal = self._calibrations.get(version)
        if cal is None:
            try:
                card = self.store.resolve(version).card()
            except (VigilModelError, ValueError, OSError) as e:
                msg = f"cannot read the card of {version}: {e}"
                raise ModelUnavailableError(msg) from e
            cal = self._require_calibration(version, card)
        return cal

    def _require_calibration(self, version: str, card: ModelCard) -> Calibration:
        if card.calibration is None:
            msg = (
                f"model {version} has no calibration in its card, so its raw signals cannot become [0, 1] scores; "
                "fit one on held-out normal footage (models.calibration.fit_calibration) and register a new version"
            )
            raise ModelUnavailableError(msg)
        self._calibrations[version] = card.calibration
        return card.calibration

    def loaded(self) -> list[str]:
        return list(self._models)
