"""Uploaded checkpoints: recognised by their bytes, size-limited, stored once under their content hash."""

import io

import pytest
import torch

from backend.defaults import DEFAULT_CHECKPOINT
from backend.errors import CheckpointError
from backend.models import load_checkpoint
from backend.storage import MAX_CHECKPOINT_BYTES, checkpoint_kind, store_checkpoint_upload


def test_a_safetensors_upload_is_stored_by_hash_and_loads(tmp_path):
    data = DEFAULT_CHECKPOINT.read_bytes()
    path = store_checkpoint_upload(data, tmp_path)
    assert path.parent == tmp_path / "uploads" and path.suffix == ".safetensors"
    assert store_checkpoint_upload(data, tmp_path) == path  # same bytes, same file
    assert load_checkpoint(path).meta.arch == "vgg_compact"
    assert [p.name for p in (tmp_path / "uploads").iterdir()] == [path.name]  # no temporary file left


def test_a_torch_checkpoint_is_recognised_whatever_its_name(tmp_path):
    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(2)}, buffer)
    assert checkpoint_kind(buffer.getvalue()) == "torch"
    assert store_checkpoint_upload(buffer.getvalue(), tmp_path).suffix == ".pt"


@pytest.mark.parametrize(
    "data",
    [b"", b"<html><body>model</body></html>", b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!", b"\x89PNG\r\n" * 4],
)
def test_other_content_is_refused_and_nothing_is_written(tmp_path, data):
    with pytest.raises(CheckpointError, match="neither a safetensors file nor a torch checkpoint"):
        store_checkpoint_upload(data, tmp_path)
    assert not (tmp_path / "uploads").exists() or not any((tmp_path / "uploads").iterdir())


def test_an_upload_over_the_limit_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="limited to 200 MiB"):
        store_checkpoint_upload(b"PK\x03\x04" + bytes(MAX_CHECKPOINT_BYTES), tmp_path)
