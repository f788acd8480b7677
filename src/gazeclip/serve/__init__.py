"""`gazeclip serve`: an HTTP service (FastAPI) and a web page around one trained run.

    app.py          create_app(detector): POST /v1/predict, GET /healthz, GET / (the page)
    cli.py          `gazeclip serve --run RUN [--host 127.0.0.1 --port 8000]`
    static/         the page: one self-contained HTML file (no CDN, no external fonts)
"""
