"""`gazeclip serve [--run RUN] [--host 127.0.0.1] [--port 8000]`: the HTTP service and its web page,
around a trained run or (without --run) the reference model packaged with gazeclip.

    gazeclip serve
    gazeclip serve --run demo-out/runs/gazeclip-p2
    gazeclip serve --run demo-out/runs/gazeclip-p2 --runtime openvino     # its export, compiled by OpenVINO
    # open http://127.0.0.1:8000/ , or:
    curl -F files=@photo.jpg http://127.0.0.1:8000/v1/predict
"""
from __future__ import annotations

import argparse

from ..inference.cli import add_runtime_arguments, runtime_options
from .app import DEFAULT_MAX_PENDING, DEFAULT_MAX_UPLOAD_MB


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", help="run folder written by `gazeclip train` (default: the reference model packaged "
                                 "with gazeclip)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="auto")
    add_runtime_arguments(p)
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                   help=f"largest request body accepted (default {DEFAULT_MAX_UPLOAD_MB:g} MB); larger ones get 413")
    p.add_argument("--max-pending", type=int, default=DEFAULT_MAX_PENDING,
                   help="requests allowed to wait or run at once; more get 503")
    p.add_argument("--max-megapixels-in-flight", type=float,
                   help="decoded pixels held at once across all requests (default: twice the pixel limit of one "
                        "image, GAZECLIP_MAX_IMAGE_PIXELS); a file that would go over it gets 503")


def run(args: argparse.Namespace) -> int:
    from ..inference.detector import load
    from .app import create_app

    det = load(args.run, args.device, **runtime_options(args))
    import uvicorn

    budget = int(args.max_megapixels_in_flight * 1e6) if args.max_megapixels_in_flight else None
    app = create_app(det, max_upload_mb=args.max_upload_mb, max_pending=args.max_pending, max_pixels_in_flight=budget)
    print(f"gazeclip serve: {det} on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
