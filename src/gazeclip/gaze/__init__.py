"""Gaze: pluggable estimators (registry), the batch API with its on-disk cache, gaze statistics.

    from gazeclip.gaze import analyze_paths, create_estimator
    results = analyze_paths(["a.jpg", "b.png"], cache_dir="~/.cache/gazeclip/facegaze")
"""
from .cache import GazeCache, content_hash
from .estimators import (GazeEstimator, convert_checkpoint, create_estimator, describe_estimators,
                         infer_resnet_arch, list_estimators, normalised_to_camera, register_estimator)
from .pipeline import analyze_image, analyze_paths, iter_analyze
from .serialize import to_json_dict

__all__ = ["GazeCache", "GazeEstimator", "analyze_image", "analyze_paths", "content_hash", "convert_checkpoint",
           "create_estimator", "describe_estimators", "infer_resnet_arch", "iter_analyze", "list_estimators",
           "normalised_to_camera", "register_estimator", "to_json_dict"]
