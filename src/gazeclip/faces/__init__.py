"""Faces: reading images, detection (MediaPipe FaceLandmarker, RetinaFace fallback), 478
landmarks, head pose by PnP, ETH-XGaze normalisation, CLIP crops and facial region boxes."""
from .analyzer import DEFAULT_MARGIN, FaceAnalyzer, square_crop
from .geometry import Camera, direction_to_pitchyaw, pitchyaw_to_direction
from .io import ImageReadError, decode_image, load_image, max_image_pixels, set_max_image_pixels
from .regions import REGIONS, region_boxes

__all__ = ["Camera", "DEFAULT_MARGIN", "FaceAnalyzer", "ImageReadError", "REGIONS", "decode_image",
           "direction_to_pitchyaw", "load_image", "max_image_pixels", "pitchyaw_to_direction", "region_boxes", "set_max_image_pixels", "square_crop"]
