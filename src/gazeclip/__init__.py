"""gazeclip: gaze-guided CLIP for deepfake attribution and detection.

    import gazeclip
    det = gazeclip.load("demo-out/runs/gazeclip-p2")       # a trained run folder
    print(det.predict("photo.jpg")[0].faces)               # [FaceResult(verdict=..., p_fake=..., ...)]
"""
__version__ = "0.1.0"

# The public API, imported on first use so that `import gazeclip` stays fast.
_API = {"load": "gazeclip.inference.detector", "Detector": "gazeclip.inference.detector",
        "VideoOptions": "gazeclip.inference.video", "FaceResult": "gazeclip.inference.results",
        "ImageResult": "gazeclip.inference.results", "VideoResult": "gazeclip.inference.results",
        "TrackResult": "gazeclip.inference.results"}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'gazeclip' has no attribute {name!r}")
