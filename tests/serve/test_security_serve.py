"""`gazeclip serve` under hostile load (issue 23, items 4 and 5, and item 1 through the service):
memory bounded by a budget of decoded pixels in flight, not by a request count (8 concurrent
requests of a 9000x9000 PNG stay under 3 GB above idle, each gets 200 or 503); files decoded one
at a time; the progressive-JPEG scan bomb and EPS refused before any decoding; no more work for a
client that has gone. Everything over loopback (127.0.0.1) only, with a bounded number of requests.
"""
from __future__ import annotations

import io
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import gazeclip  # noqa: E402
from gazeclip.faces.io import inspect_image  # noqa: E402
from gazeclip.serve.app import create_app  # noqa: E402
from helpers import make_run  # noqa: E402
from helpers import eps_bytes, scan_bomb  # noqa: E402

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def png(side: int, colour=(90, 140, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def det(tmp_path_factory):
    run = tmp_path_factory.mktemp("secserve") / "run"
    make_run(run, faces="none")
    return gazeclip.load(run)


class Held:
    """The detector, each prediction held until the test lets it go; counts predictions."""

    def __init__(self, det):
        self.det, self.run = det, det.run
        self.calls = 0
        self.entered, self.release = threading.Event(), threading.Event()

    def iter_records(self, x):
        self.calls += 1
        self.entered.set()
        assert self.release.wait(60)
        yield from self.det.iter_records(x)


def test_decode_budget_spans_requests_and_files(det):
    from fastapi.testclient import TestClient

    img = png(400)
    cost = inspect_image(img).cost
    held = Held(det)
    app = create_app(held, max_pixels_in_flight=int(cost * 1.5))  # room for one such image at a time
    client = TestClient(app)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.post, "/v1/predict", files={"files": ("a.png", img, "image/png")})
        assert held.entered.wait(30)
        second = client.post("/v1/predict", files={"files": ("b.png", img, "image/png")})
        assert second.status_code == 503 and "budget" in second.json()["detail"] and "b.png" in second.json()["detail"]
        small = pool.submit(client.post, "/v1/predict", files={"files": ("tiny.png", png(100), "image/png")})
        deadline = time.time() + 30
        while held.calls < 2 and time.time() < deadline:  # what fits in the budget left is decoded too
            time.sleep(0.05)
        assert held.calls == 2
        held.release.set()
        assert small.result(timeout=60).status_code == 200
        assert first.result(timeout=60).status_code == 200
    # one request of three such files: decoded and predicted one at a time, never all at once
    r = client.post("/v1/predict", files=[("files", (f"{i}.png", img, "image/png")) for i in range(3)])
    assert r.status_code == 200 and len(r.json()["records"]) == 3
    assert app.state.budget.peak <= cost * 1.5 and app.state.budget.used == 0
    too_big = client.post("/v1/predict", files={"files": ("huge.png", png(600), "image/png")})
    assert too_big.status_code == 413 and "huge.png" in too_big.json()["detail"]


def test_bombs_and_foreign_formats_refused_before_decoding(det):
    from fastapi.testclient import TestClient

    client = TestClient(create_app(det))
    t0 = time.process_time()
    r = client.post("/v1/predict", files={"files": ("bomb.jpg", scan_bomb(), "image/jpeg")})
    assert r.status_code == 413 and "bomb.jpg" in r.json()["detail"] and "scans" in r.json()["detail"]
    assert time.process_time() - t0 < 2.0
    r = client.post("/v1/predict", files={"files": ("drawing.eps", eps_bytes(), "application/postscript")})
    assert r.status_code == 415 and "drawing.eps" in r.json()["detail"]
    data = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 100, np.uint8)).save(data, "JPEG")
    cut = data.getvalue()[:200] + b"\xff\xd9"
    r = client.post("/v1/predict", files=[("files", ("ok.png", png(64), "image/png")),
                                          ("files", ("cut.jpg", cut, "image/jpeg"))])
    assert r.status_code == 422 and "cut.jpg" in r.json()["detail"]  # before ok.png was predicted
    assert client.post("/v1/predict", files={"files": ("ok.png", png(64), "image/png")}).status_code == 200


def test_no_more_work_for_a_client_that_has_gone(det):
    import uvicorn

    held = Held(det)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(held), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 30
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        body = b"".join(b"--xyz\r\nContent-Disposition: form-data; name=\"files\"; filename=\"%d.png\"\r\n"
                        b"Content-Type: image/png\r\n\r\n" % i + png(64) + b"\r\n" for i in range(3)) + b"--xyz--\r\n"
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       b"Content-Type: multipart/form-data; boundary=xyz\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(body) + body)
        assert held.entered.wait(30)  # the first of the three files is being predicted
        client.close()                # ... and the client goes away
        time.sleep(0.5)
        held.release.set()
        time.sleep(2.0)
        assert held.calls == 1        # files 2 and 3 were never decoded nor predicted
    finally:
        held.release.set()
        server.should_exit = True
        thread.join(30)


def test_eight_concurrent_9000px_pngs_stay_under_3gb_above_idle(det):
    sys.path.insert(0, str(BENCH))
    try:
        from serve_rss import measure
    finally:
        sys.path.remove(str(BENCH))
    m = measure(str(det.run.run_dir), side=9000, requests=8)
    print(f"serve RSS: idle {m['idle_rss'] / 2**30:.2f} GiB, peak +{m['peak_above_idle'] / 2**30:.2f} GiB, "
          f"after {m['after_rss'] / 2**30:.2f} GiB, statuses {sorted(m['statuses'])}")
    assert m["png_bytes"] < 400_000  # small on the wire, 243 MB decoded
    assert set(m["statuses"]) <= {200, 503} and 200 in m["statuses"]
    assert m["peak_above_idle"] <= 3 * 2**30
