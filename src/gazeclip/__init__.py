"""gazeclip: gaze-guided CLIP for deepfake attribution and detection."""
__version__ = "0.1.0"
