"""The HTTP service around one `Detector` (engine/detector.py).

    POST /v1/predict   multipart form, one or more files in the field `files` (or `file`)
                       -> {"records": [...], "model", "elapsed_ms"}; records are the lines
                       `gazeclip predict --json` prints, "path" being the uploaded file's name;
                       with `explain=1` (a form field or a query parameter) each face record also
                       has "cam": {"region": [x0, y0, x1, y1], "png": "data:image/png;base64,...",
                       "class"}: the Grad-CAM of `gazeclip explain` (slower: one backward pass a face)
    GET  /healthz      {"status": "ok", "model", "backbone", "run", "classes", "faces",
                        "detection_threshold", "version"}
    GET  /             the web page (static/index.html)

Bad input gets an HTTP error with a one-line message and the service goes on: a body over the
upload limit (default 20 MB) 413 before it is read in full; a file that is not an image 415; a
damaged image 422; an image whose declared size is too large to decode (a decompression bomb) or
that would take too long to (a progressive JPEG of thousands of scans) 413, refused by the
project's one image decoder (gazeclip.faces.io) from its header, before any decoding.

Memory is bounded by what is decoded, not by how many requests there are: every file's header is
checked first (`inspect_image`: cheap), then each file is decoded and predicted in turn, under a
budget of decoded pixels in flight across all requests (`PixelBudget`, default twice the pixel
limit of one image): a file that would go over it gets 503 (retry), so at most the budget is ever
decoded at once, however many requests arrive. Between files the request checks that its client
is still connected, and stops (no more decoding or prediction) when it has gone. The detector's
lock runs one prediction at a time; at most `max_pending` requests (their uploads held in memory,
each under the upload limit) may wait or run at once, more get 503.
"""
# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time

import json
import threading
import time
from importlib import resources

DEFAULT_MAX_UPLOAD_MB = 20.0
DEFAULT_MAX_PENDING = 64
# design choice, not from the paper: two images of the largest allowed size decoded at once (one
# being predicted, one waiting for the detector), about 2 x 270 MB of 8-bit RGB at the default limit
BUDGET_IMAGES = 2
TRIM_PIXELS = 16_000_000  # after decoding an image this large, freed memory goes back to the OS


class PixelBudget:
    """Decoded pixels in flight across all requests: `reserve(n)` takes n of them or says no
    (never waits: beyond the budget the answer is 503), `release(n)` gives them back."""

    def __init__(self, limit: int):
        self.limit = int(limit)
        self.used = 0
        self.peak = 0
        self._lock = threading.Lock()

    def reserve(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            self.peak = max(self.peak, self.used)
            return True

    def release(self, n: int) -> None:
        with self._lock:
            self.used -= n


class _ClientGone(Exception):
    pass


def _trim_heap() -> None:
    """Hand freed heap memory back to the OS (glibc keeps the blocks of a large decode otherwise,
    so the service would stay at its peak); a no-op where there is no glibc."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: refuse request bodies over `max_bytes` with 413, by Content-Length when
    the client sends one and by counting the bytes as they arrive otherwise."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def _send_413(self, send) -> None:
        body = json.dumps({"detail": f"upload larger than the limit of {self.max_bytes / 1e6:.1f} MB; "
                                     "send a smaller image (or start the service with a larger --max-upload-mb)"})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body.encode()})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        try:
            if length is not None and int(length) > self.max_bytes:
                return await self._send_413(send)
        except ValueError:
            pass
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return msg

        async def tracking_send(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._send_413(send)


def _status_for(err) -> int:
    """HTTP status of an ImageReadError: 413 too large (bomb), 415 not an image, 422 damaged."""
    reason = getattr(err, "reason", str(err)).lower()
    # the decoder's size checks: "declares ... pixels, over the limit", "more pixels than the limit",
    # "not enough memory to decode it"
    if any(w in reason for w in ("limit", "too large", "exceed", "decompression", "memory")):
        return 413
    if "not an image" in reason or "unknown format" in reason:
        return 415
    return 422


def page_html() -> str:
    return (resources.files("gazeclip.serve") / "static" / "index.html").read_text(encoding="utf-8")


def create_app(detector, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, max_pending: int = DEFAULT_MAX_PENDING,
               max_pixels_in_flight: int | None = None):
    """A FastAPI app serving `detector` (a gazeclip Detector, or anything with its `iter_records`).
    `max_pixels_in_flight`: the decode budget (default BUDGET_IMAGES x the pixel limit of one
    image, `gazeclip.faces.max_image_pixels()`); `app.state.budget` is the live `PixelBudget`."""
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import HTMLResponse, Response

    from .. import __version__
    from ..faces.io import ImageReadError, decode_image, inspect_image, max_image_pixels
    from ..inference.results import detection_threshold

    max_bytes = int(max_upload_mb * 1e6)
    app = FastAPI(title="gazeclip", version=__version__,
                  description="Deepfake detection and attribution of faces, with gaze (GazeCLIP).")
    app.add_middleware(BodyLimit, max_bytes=max_bytes)
    slots = threading.BoundedSemaphore(max_pending)
    budget = PixelBudget(max_pixels_in_flight or BUDGET_IMAGES * max_image_pixels())
    app.state.budget = budget
    run = detector.run
    about = {"model": run.cfg.model, "backbone": run.cfg.backbone, "run": run.run_dir.name,
             "classes": list(run.taxonomy.classes), "faces": run.cfg.faces,
             "detection_threshold": detection_threshold(run), "version": __version__}
    html = page_html()

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", **about}

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return html

    async def _uploads(request: Request) -> tuple[list[tuple[str, bytes]], bool]:
        """(name, bytes) per uploaded file, and whether Grad-CAM maps were asked for (explain=1)."""
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise HTTPException(415, "send the images as multipart/form-data in the field 'files'")
        form = await request.form(max_files=64, max_fields=64)
        try:
            files = [v for k, v in form.multi_items() if k in ("files", "file") and hasattr(v, "read")]
            if not files:
                raise HTTPException(422, "no file in the form; send one or more images in the field 'files'")
            flag = str(form.get("explain") or request.query_params.get("explain") or "").lower()
            return [(f.filename or f"upload-{i}", await f.read()) for i, f in enumerate(files)], \
                flag in ("1", "true", "yes", "on")
        finally:
            await form.close()

    def _add_cams(records: list[dict], img) -> None:
        """The Grad-CAM of each face record of one image (viz.explain.explain_faces), as "cam"."""
        import base64

        from ..viz.explain import explain_faces

        faces = [r for r in records if "p_fake" in r]
        if not faces:
            return
        if getattr(run, "runtime", "torch") != "torch":
            raise HTTPException(422, "explain=1 needs the torch runtime (Grad-CAM differentiates the model); "
                                     "serve the run without --runtime onnx")
        with detector.lock:  # Grad-CAM hooks the model's blocks: no prediction may run meanwhile
            cams = explain_faces(run, detector.source, img)
        for rec, cam in zip(faces, cams):
            rec["cam"] = {"region": cam["region"], "class": cam["class"],
                          "png": "data:image/png;base64," + base64.b64encode(cam["png"]).decode()}

    def _inspect(name: str, data: bytes):
        try:
            return inspect_image(data, name)
        except ImageReadError as e:
            raise HTTPException(_status_for(e), str(e)) from None

    def _records(name: str, data: bytes, info, explain: bool) -> list[dict]:
        try:
            img = decode_image(data, name, info=info)
        except ImageReadError as e:
            raise HTTPException(_status_for(e), str(e)) from None
        out = []
        for _, rec in detector.iter_records([img]):
            rec["path"] = name
            out.append(rec)
        if explain:
            _add_cams(out, img)
        return out

    async def _predict(request: Request, uploads: list[tuple[str, bytes]], explain: bool) -> dict:
        t0 = time.perf_counter()
        # every header first: one bad file fails the request before any decoding or prediction
        infos = [await run_in_threadpool(_inspect, name, data) for name, data in uploads]
        records = []
        for (name, data), info in zip(uploads, infos):
            if await request.is_disconnected():
                raise _ClientGone()
            if info.cost > budget.limit:
                raise HTTPException(413, f"{name}: {info.width}x{info.height} is more than the service decodes at once "
                                         f"({budget.limit / 1e6:.0f} megapixels); send a smaller image")
            if not budget.reserve(info.cost):
                raise HTTPException(503, f"busy: decoding {name} ({info.width}x{info.height}) now would go over the "
                                         f"service's budget of {budget.limit / 1e6:.0f} megapixels in flight; "
                                         "retry shortly")
            try:
                records += await run_in_threadpool(_records, name, data, info, explain)
            finally:
                budget.release(info.cost)
                if info.pixels >= TRIM_PIXELS:
                    _trim_heap()
        return {"records": records, "model": about["model"], "run": about["run"],
                "elapsed_ms": round(1000 * (time.perf_counter() - t0), 1)}

    @app.post("/v1/predict")
    async def predict(request: Request):
        uploads, explain = await _uploads(request)
        if not slots.acquire(blocking=False):
            raise HTTPException(503, f"busy: {max_pending} requests are already waiting; retry shortly")
        try:
            return await _predict(request, uploads, explain)
        except _ClientGone:
            return Response(status_code=499)  # nobody reads it: the work simply stopped
        finally:
            slots.release()

    return app
