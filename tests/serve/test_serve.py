"""`gazeclip serve`: the HTTP API with FastAPI's TestClient (records as `predict --json` prints them,
bad inputs, size limits, a decompression bomb, 16 concurrent requests, the bounded queue) and
the page being self-contained."""
from __future__ import annotations

import io
import json
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import gazeclip  # noqa: E402
from gazeclip.cli import main  # noqa: E402
from gazeclip.serve.app import create_app  # noqa: E402
from helpers import make_run  # noqa: E402


def png(seed: int, size=(40, 32)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def bomb_png(side: int = 60000) -> bytes:
    """A valid PNG header declaring side x side pixels (3.6 G pixels) with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from fastapi.testclient import TestClient

    tmp = tmp_path_factory.mktemp("serve")
    make_run(tmp / "run", faces="none")
    det = gazeclip.load(tmp / "run")
    return tmp, det, TestClient(create_app(det, max_upload_mb=1.0))


def test_health_and_page(served):
    _, det, client = served
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["model"] == "gazeclip" and h["classes"] == list(det.classes)
    assert h["detection_threshold"] == 0.5
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert 'id="file"' in html and "v1/predict" in html
    # self-contained: nothing is fetched from another host (no CDN, fonts, scripts)
    for ref in ("http://", "https://", "//cdn", "@import"):
        assert ref not in html.replace("http://www.w3.org/2000/svg", "")


def test_records_are_the_cli_records(served, capsys):
    tmp, _, client = served
    (tmp / "x.png").write_bytes(png(1))
    main(["predict", str(tmp / "x.png"), "--run", str(tmp / "run"), "--json"])
    (cli,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    r = client.post("/v1/predict", files=[("files", ("x.png", png(1), "image/png")),
                                          ("files", ("y.png", png(2), "image/png"))])
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == "gazeclip" and body["elapsed_ms"] >= 0
    first, second = body["records"]
    assert first == {**cli, "path": "x.png"}
    assert second["path"] == "y.png" and set(second) == set(first)
    r = client.post("/v1/predict", files={"file": ("z.png", png(3), "image/png")})  # `file` also accepted
    assert r.status_code == 200 and r.json()["records"][0]["path"] == "z.png"


def test_bad_inputs_get_clear_errors_and_the_service_goes_on(served):
    _, _, client = served
    cases = [
        (dict(files={"files": ("notes.txt", b"hello, not an image", "text/plain")}), 415, "notes.txt: cannot read image"),
        (dict(files={"files": ("cut.png", png(4)[:60], "image/png")}), 422, "cut.png: cannot read image"),
        (dict(files={"files": ("empty.png", b"", "image/png")}), 422, "empty"),
        (dict(files={"files": ("bomb.png", bomb_png(), "image/png")}), 413, "bomb.png"),
        (dict(files={"files": ("big.png", b"\0" * 1_200_000, "image/png")}), 413, "larger than the limit of 1.0 MB"),
        (dict(data={"other": "field"}, files={"x": ("a.png", png(5), "image/png")}), 422, "no file in the form"),
        (dict(content=b"{}", headers={"content-type": "application/json"}), 415, "multipart/form-data"),
    ]
    for kwargs, status, message in cases:
        r = client.post("/v1/predict", **kwargs)
        assert r.status_code == status, (kwargs, r.text)
        assert message in r.json()["detail"]
    # one bad file among good ones fails the request before any prediction, naming the file
    r = client.post("/v1/predict", files=[("files", ("ok.png", png(6), "image/png")),
                                          ("files", ("bad.jpg", b"\xff\xd8junk", "image/jpeg"))])
    assert r.status_code in (415, 422) and "bad.jpg" in r.json()["detail"]
    assert client.post("/v1/predict", files={"files": ("ok.png", png(6), "image/png")}).status_code == 200


def test_oversize_body_without_content_length_is_cut_off(served):
    _, _, client = served

    def chunks():
        for _ in range(40):
            yield b"\0" * 65536  # 2.6 MB in total, streamed (chunked: no Content-Length)

    r = client.post("/v1/predict", content=chunks(),
                    headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 413


def test_sixteen_concurrent_requests_each_get_their_own_answer(served):
    _, det, client = served
    images = [png(100 + i, size=(32 + i, 40)) for i in range(16)]
    expected = [r.faces[0].p_fake for r in det.predict([np.asarray(Image.open(io.BytesIO(b))) for b in images])]

    def ask(i):
        r = client.post("/v1/predict", files={"files": (f"img{i}.png", images[i], "image/png")})
        return r.status_code, r.json()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(16)))
    for i, (status, body) in enumerate(answers):
        assert status == 200
        (rec,) = body["records"]
        assert rec["path"] == f"img{i}.png" and rec["p_fake"] == pytest.approx(expected[i], abs=1e-5)


def test_requests_beyond_the_queue_get_503(served):
    from fastapi.testclient import TestClient

    _, det, _ = served
    release = threading.Event()
    entered = threading.Event()

    class Slow:  # the detector, held until the test lets it go
        run = det.run

        def iter_records(self, x):
            entered.set()
            release.wait(30)
            yield from det.iter_records(x)

    client = TestClient(create_app(Slow(), max_pending=1))
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.post, "/v1/predict", files={"files": ("a.png", png(7), "image/png")})
        assert entered.wait(30)
        second = client.post("/v1/predict", files={"files": ("b.png", png(8), "image/png")})
        release.set()
        assert second.status_code == 503 and "busy" in second.json()["detail"]
        assert first.result(timeout=60).status_code == 200
