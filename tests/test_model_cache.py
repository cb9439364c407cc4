"""Offline checks of the model cache's validity rules (no conversion, no engine)."""

import json

import pytest

from reasonflow.engine import model as model_mod
from reasonflow.errors import ConfigError


def make_dir(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"x" * 1000)
    return d


def test_directory_without_manifest_is_invalid(tmp_path):
    assert not model_mod.is_valid(make_dir(tmp_path))


def test_manifest_written_last_makes_directory_valid(tmp_path):
    d = make_dir(tmp_path)
    model_mod.write_manifest(d, {"model": "t"})
    assert model_mod.is_valid(d)
    manifest = json.loads((d / model_mod.MANIFEST_NAME).read_text())
    assert set(manifest["files"]) == {"config.json", "model.safetensors"}


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "garble_manifest"])
def test_any_damage_invalidates_the_cache(tmp_path, damage):
    d = make_dir(tmp_path)
    model_mod.write_manifest(d, {})
    weights = d / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(b"x" * 500)
    elif damage == "flip":
        weights.write_bytes(b"y" + b"x" * 999)
    elif damage == "delete":
        weights.unlink()
    else:
        (d / model_mod.MANIFEST_NAME).write_text('{"version": 1, "files": {')
    assert not model_mod.is_valid(d)


def test_unknown_model_name_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown model"):
        model_mod.resolve_model("gpt-17")


def test_local_directory_needs_config_json(tmp_path):
    with pytest.raises(ConfigError, match="config.json"):
        model_mod.resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert model_mod.resolve_model(str(tmp_path)) == (tmp_path.resolve(), tmp_path.name)
