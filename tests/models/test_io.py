"""Model files: pickles are refused, corrupt or mismatching weights give IncompatibleCheckpointError."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from models import create_method, get_method
from models.base import AnomalyMethod
from models.errors import IncompatibleCheckpointError, UnsafeWeightsError
from models.io import build_card, load_model, load_weights, save_model
from models.store import ModelStore


def _ffp(preset: str = "tiny") -> AnomalyMethod:
    return create_method(get_method("ffp").make_config(preset))


def test_torch_save_file_offered_as_weights_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    torch.save(_ffp().state_dict(), path)
    with pytest.raises(UnsafeWeightsError, match="pickle"):
        load_weights(path)


def test_legacy_pickle_offered_as_weights_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    torch.save(_ffp().state_dict(), path, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeWeightsError, match="only loads safetensors"):
        load_weights(path)


@pytest.mark.parametrize("content", [b"not a safetensors file at all", b'\x10\x00\x00\x00\x00\x00\x00\x00{"a"'])
def test_corrupt_weights_file_is_incompatible(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "weights.safetensors"
    path.write_bytes(content)
    with pytest.raises(IncompatibleCheckpointError, match="corrupt"):
        load_weights(path)


def test_truncated_weights_in_store_fail_the_checksum(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    method = _ffp()
    version = save_model(store, method, build_card(method, "ffp-tiny"))
    data = version.weights_path.read_bytes()
    version.weights_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IncompatibleCheckpointError, match="sha256"):
        load_model(store, "ffp-tiny")


def test_weights_that_do_not_fit_the_config_are_incompatible(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    method = _ffp()
    version = save_model(store, method, build_card(method, "ffp-tiny"))
    other = create_method(get_method("ffp").make_config("tiny", base_channels=8))
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(version.weights_path))
    card = version.card().model_copy(update={"weights_sha256": ""})
    store.write_card(version, card)
    with pytest.raises(IncompatibleCheckpointError, match="do not fit"):
        load_model(store, version.ref)


def test_model_rebuilds_from_its_card_alone(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    method = _ffp("small")
    version = save_model(store, method, build_card(method, "ffp-small"))
    loaded, card, _ = load_model(store, "ffp-small")
    assert card.config == method.config.model_dump(mode="json")
    assert card.signal_names == ["neg_psnr"]
    assert loaded.input_spec == method.input_spec
    assert version.ref == "ffp-small@v1"


def test_safetensors_whose_header_length_ends_in_0x80_is_not_taken_for_a_pickle(tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    method = create_method(get_method("ffp").make_config("tiny", base_channels=6))
    save_file({k: v.contiguous() for k, v in method.state_dict().items()}, str(path))
    assert path.read_bytes()[0] == 0x80  # header length 0x580: the case the sniffing gets wrong
    assert load_weights(path).keys() == method.state_dict().keys()
