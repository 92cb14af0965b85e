"""course_lib.assets: SHA256SUMS manifests, verifying asset folders, going offline."""
import hashlib
import os
import sys

import pytest

from course_lib import assets
from course_lib.assets import (MANIFEST, AssetError, bundled, go_offline, read_manifest, resolve, sha256_of,
                               verify_asset, write_manifest)

FILES = {"config.json": b'{"n_layer": 2}\n', "model.safetensors": bytes(range(256)) * 40, "vocab.txt": b"a\nb\n"}


@pytest.fixture
def asset(tmp_path):
    """A small asset folder with its manifest."""
    folder = tmp_path / "tiny-asset"
    folder.mkdir()
    for name, data in FILES.items():
        (folder / name).write_bytes(data)
    (folder / ".hidden").write_text("not listed")
    write_manifest(folder)
    return folder


def bump_mtime(path):
    """Make the change visible to the size/mtime cache even on filesystems with coarse timestamps."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))


def test_manifest_lists_every_file_with_its_sha256(asset):
    text = (asset / MANIFEST).read_text(encoding="utf-8")
    expected = "".join(f"{hashlib.sha256(FILES[n]).hexdigest()}  {n}\n" for n in sorted(FILES))
    assert text == expected  # sha256sum's format; hidden files and the manifest itself left out
    assert read_manifest(asset) == {n: hashlib.sha256(d).hexdigest() for n, d in FILES.items()}
    assert not any(p.name.endswith(".tmp") for p in asset.iterdir())


def test_sha256_of_reads_in_chunks(asset):
    assert sha256_of(asset / "model.safetensors", chunk=7) == hashlib.sha256(FILES["model.safetensors"]).hexdigest()


def test_read_manifest_accepts_binary_mode_marker(tmp_path):
    (tmp_path / MANIFEST).write_text("abc123 *model.bin\n\ndef456  train.parquet\n", encoding="utf-8")
    assert read_manifest(tmp_path) == {"model.bin": "abc123", "train.parquet": "def456"}


def test_verify_passes_and_returns_the_folder(asset):
    assert verify_asset(asset) == asset
    assert verify_asset(str(asset)) == asset  # again, from the cache
    assert resolve(str(asset)) == str(asset)


def test_changed_byte_names_the_file_and_how_to_rebuild(asset):
    data = bytearray(FILES["model.safetensors"])
    data[100] ^= 1  # same size, one bit different
    (asset / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(AssetError) as err:
        verify_asset(asset)
    msg = str(err.value)
    assert "model.safetensors" in msg and "corrupt" in msg
    assert "make assets" in msg and f"ASSET={asset.name}" in msg
    assert f"git checkout -- {asset}" in msg


def test_change_after_a_passing_check_is_caught(asset):
    assert verify_asset(asset) == asset
    path = asset / "vocab.txt"
    path.write_bytes(b"a\nc\n")  # same size
    bump_mtime(path)
    with pytest.raises(AssetError, match="vocab.txt is corrupt"):
        verify_asset(asset)


def test_deleted_file_is_named(asset):
    (asset / "config.json").unlink()
    with pytest.raises(AssetError) as err:
        verify_asset(asset)
    assert f"file config.json listed in {MANIFEST} is missing" in str(err.value)
    assert "make assets" in str(err.value)


def test_missing_folder(tmp_path):
    with pytest.raises(AssetError) as err:
        verify_asset(tmp_path / "gpt2-imdb-mini")
    assert "is missing" in str(err.value) and "bundled assets:" in str(err.value)
    assert "make assets ASSET=gpt2-imdb-mini" in str(err.value)


def test_unknown_bundled_name():
    with pytest.raises(AssetError, match=r"asset folder .*no-such-asset is missing"):
        verify_asset("no-such-asset")


def test_missing_manifest(asset):
    (asset / MANIFEST).unlink()
    with pytest.raises(AssetError) as err:
        verify_asset(asset)
    assert f"{asset / MANIFEST} is missing" in str(err.value)
    assert "make assets" in str(err.value)


def test_extra_files_not_in_the_manifest_are_ignored(asset):
    (asset / "notes.txt").write_text("added later")
    assert verify_asset(asset) == asset


def test_resolve_leaves_hub_names_alone():
    assert resolve("lvwerra/gpt2-imdb") == "lvwerra/gpt2-imdb"
    assert resolve("stanfordnlp/imdb") == "stanfordnlp/imdb"


def test_resolve_checks_bundled_paths():
    with pytest.raises(AssetError, match="not-built-yet is missing"):
        resolve(str(assets.ASSETS_DIR / "not-built-yet"))


def test_resolve_verifies_a_folder_with_a_manifest(asset):
    assert resolve(str(asset)) == str(asset)
    (asset / "vocab.txt").write_bytes(b"x\ny\n")
    bump_mtime(asset / "vocab.txt")
    with pytest.raises(AssetError, match="vocab.txt is corrupt"):
        resolve(str(asset))


def test_resolve_leaves_a_checkpoint_without_manifest_alone(tmp_path):
    checkpoint = tmp_path / "my-ppo-run"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    assert resolve(str(checkpoint)) == str(checkpoint)


def test_bundled_by_name(asset, monkeypatch):
    monkeypatch.setattr(assets, "ASSETS_DIR", asset.parent)
    assert assets.bundled_names() == ["tiny-asset"]
    assert bundled("tiny-asset") == asset
    with pytest.raises(AssetError) as err:
        bundled("gpt2-imdb-huge")
    assert str(err.value) == "no bundled asset named 'gpt2-imdb-huge'; bundled assets: tiny-asset"
    (asset / "config.json").unlink()
    with pytest.raises(AssetError, match="config.json listed in SHA256SUMS is missing"):
        bundled("tiny-asset")


def test_go_offline_sets_switches_and_constants(monkeypatch):
    import datasets.config
    import huggingface_hub.constants
    import transformers.utils.hub

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(transformers.utils.hub, "_is_offline_mode", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    assert not transformers.utils.hub.is_offline_mode()

    go_offline()

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        assert os.environ[var] == "1"
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True
    assert transformers.utils.hub.is_offline_mode() is True
    assert datasets.config.HF_HUB_OFFLINE is True


def test_go_offline_without_the_libraries_imported(monkeypatch):
    for mod in ("huggingface_hub.constants", "transformers.utils.hub", "datasets.config"):
        monkeypatch.delitem(sys.modules, mod, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    go_offline()  # only the environment: the libraries read it when they are imported
    assert os.environ["HF_HUB_OFFLINE"] == "1"
