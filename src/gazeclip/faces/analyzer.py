"""`FaceAnalyzer`: image -> list of `Face` (box, landmarks, head pose, CLIP crop, ETH-XGaze face).

MediaPipe's FaceLandmarker (Tasks API, IMAGE mode) gives 478 landmarks; RetinaFace is the
fallback detector when MediaPipe's short-range detector finds nothing (small or distant faces):
its boxes are re-run through the landmarker on a crop, and kept with their 5 points otherwise.
"""
from __future__ import annotations

import atexit
import threading
import weakref
from dataclasses import dataclass

import cv2
import numpy as np

from ..quiet import native_logs_silenced
from ..records import Face
from . import geometry as geo
from ..errors import UsageError

_LIVE: "weakref.WeakSet[FaceAnalyzer]" = weakref.WeakSet()
# Every MediaPipe task made here stays referenced from this list until it is closed, so the garbage
# collector never finalises one: MediaPipe's own __del__ closes the task through its dispatcher
# thread, and doing that wherever a collection happened to run (inside torch.save, matplotlib)
# deadlocked the process.
_KEPT: list = []
_KEPT_LOCK = threading.Lock()


@atexit.register
def _close_all() -> None:
    # MediaPipe's task destructors fail noisily when they run during interpreter shutdown
    for a in list(_LIVE):
        try:
            a.close()
        except Exception:  # noqa: BLE001 - shutting down anyway
            pass
    try:
        _close_tasks(list(_KEPT))
    except Exception:  # noqa: BLE001 - shutting down anyway
        pass


# design choice, not from the paper: square CLIP crop = landmark box enlarged by this fraction per side
DEFAULT_MARGIN = 0.25


@dataclass
class _Raw:
    """A face before the geometry: landmarks (K, 2) pixels, box, score, detector."""

    landmarks: np.ndarray
    box: np.ndarray
    score: float
    detector: str


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / ua) if ua > 0 else 0.0


def square_crop(image: np.ndarray, box, margin: float, size: int,
                antialias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Square crop around `box` enlarged by `margin` per side, resized to size x size; outside the
    image is black. Returns the crop and the 2x3 affine (image px -> crop px)."""
    x0, y0, x1, y1 = map(float, box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    side = max(side, 1.0)
    s = size / side
    affine = np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]])
    if s >= 0.5 or not antialias:
        crop = cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return crop, affine
    # strong minification: area-average the region first (warpAffine alone would alias)
    crop = np.zeros((size, size, image.shape[2]), image.dtype)
    h, w = image.shape[:2]
    ix0, iy0 = max(0, int(np.floor(cx - side / 2))), max(0, int(np.floor(cy - side / 2)))
    ix1, iy1 = min(w, int(np.ceil(cx + side / 2))), min(h, int(np.ceil(cy + side / 2)))
    if ix1 > ix0 and iy1 > iy0:
        ox0, oy0 = affine[0, 0] * ix0 + affine[0, 2], affine[1, 1] * iy0 + affine[1, 2]
        ox1, oy1 = affine[0, 0] * ix1 + affine[0, 2], affine[1, 1] * iy1 + affine[1, 2]
        px0, py0 = max(0, int(round(ox0))), max(0, int(round(oy0)))
        px1, py1 = min(size, int(round(ox1))), min(size, int(round(oy1)))
        if px1 > px0 and py1 > py0:
            crop[py0:py1, px0:px1] = cv2.resize(image[iy0:iy1, ix0:ix1], (px1 - px0, py1 - py0),
                                                interpolation=cv2.INTER_AREA)
    return crop, affine


def _kept(task):
    with _KEPT_LOCK:
        _KEPT.append(task)
    return task


def _close_tasks(tasks: list) -> None:
    with native_logs_silenced():
        for task in tasks:
            try:
                task.close()
            except RuntimeError:  # the interpreter is shutting down: MediaPipe's dispatcher is gone, and so is the task
                pass
            with _KEPT_LOCK:
                if any(k is task for k in _KEPT):
                    _KEPT.remove(task)


class FaceAnalyzer:
    """Find faces and prepare everything later steps need.

    crop_size: side of the CLIP crop; margin: fraction of the face box added per side of it;
    max_faces: most faces returned per image (largest first); camera: fixed intrinsics (else
    pseudo-intrinsics focal = max(H, W), centre principal point); detect_max_side: images are
    downscaled to this longer side for detection, crops come from the original;
    fallback: "retinaface" (when MediaPipe finds nothing), "always" (also add RetinaFace faces
    MediaPipe missed) or "none"; normalise: compute the ETH-XGaze face.
    """

    def __init__(self, crop_size: int = 224, margin: float = DEFAULT_MARGIN, max_faces: int = 8,
                 camera: geo.Camera | None = None, detect_max_side: int = 1280, fallback: str = "retinaface",
                 min_detection_confidence: float = 0.5, retinaface_threshold: float = 0.7,
                 normalise: bool = True, norm_size: int = geo.ETH_SIZE, antialias: bool = True,
                 landmarker_path: str | None = None):
        if fallback not in ("retinaface", "always", "none"):
            raise UsageError(f"fallback must be 'retinaface', 'always' or 'none', not {fallback!r}")
        self.crop_size = int(crop_size)
        self.margin = float(margin)
        self.max_faces = int(max_faces)
        self.camera = camera
        # design choice, not from the paper: detection on a copy at most 1280 px on its longer side
        self.detect_max_side = int(detect_max_side)
        self.fallback = fallback
        self.min_detection_confidence = float(min_detection_confidence)
        self.retinaface_threshold = float(retinaface_threshold)
        self.normalise = normalise
        self.norm_size = int(norm_size)
        self.antialias = bool(antialias)  # area-downscale faces shrunk > 2x before the warps
        if landmarker_path is None:
            from ..weights import asset_path

            landmarker_path = str(asset_path("face-landmarker"))
        self.landmarker_path = landmarker_path
        self.model478 = geo.canonical_face_model(landmarker_path)
        self.model5 = geo.five_point_model(self.model478)
        self._center478 = geo.face_center_model(self.model478, five_point=False)
        self._center5 = geo.face_center_model(self.model5, five_point=True)
        self._lock = threading.Lock()  # MediaPipe task objects are not thread-safe
        self._landmarker = None
        self._crop_landmarker = None
        self._detector = None
        self._retina = None
        _LIVE.add(self)

    # -- configuration fingerprint (for the cache key) ----------------------------------------
    def config(self) -> dict:
        cam = None if self.camera is None else np.asarray(self.camera.matrix).round(6).tolist()
        return {"crop_size": self.crop_size, "margin": self.margin, "max_faces": self.max_faces, "camera": cam,
                "detect_max_side": self.detect_max_side, "fallback": self.fallback,
                "min_detection_confidence": self.min_detection_confidence,
                "retinaface_threshold": self.retinaface_threshold, "normalise": self.normalise,
                "norm_size": self.norm_size, "antialias": self.antialias}

    # -- lazily built models ------------------------------------------------------------------
    def _make_landmarker(self, num_faces: int):
        from mediapipe.tasks.python import BaseOptions, vision

        opts = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=self.landmarker_path),
            running_mode=vision.RunningMode.IMAGE, num_faces=num_faces,
            min_face_detection_confidence=self.min_detection_confidence,
            min_face_presence_confidence=self.min_detection_confidence)
        return _kept(vision.FaceLandmarker.create_from_options(opts))

    def _make_detector(self):
        """BlazeFace from the same bundle, only to give each landmarked face a confidence."""
        import zipfile

        from mediapipe.tasks.python import BaseOptions, vision

        with zipfile.ZipFile(self.landmarker_path) as zf:
            buf = zf.read("face_detector.tflite")
        opts = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_buffer=buf),
                                          running_mode=vision.RunningMode.IMAGE,
                                          min_detection_confidence=self.min_detection_confidence)
        return _kept(vision.FaceDetector.create_from_options(opts))

    @property
    def retinaface(self):
        if self._retina is None:
            from .retinaface import RetinaFace

            self._retina = RetinaFace(score_threshold=self.retinaface_threshold, max_side=min(960, self.detect_max_side))
        return self._retina

    def close(self) -> None:
        _close_tasks(self._tasks())

    def _tasks(self) -> list:
        tasks = [t for t in (self._landmarker, self._crop_landmarker, self._detector) if t is not None]
        self._landmarker = self._crop_landmarker = self._detector = None
        return tasks

    def __del__(self):
        # MediaPipe logs when its tasks are destroyed, so they are closed quietly; but not here: a
        # finaliser runs wherever the garbage collector happens to run, and MediaPipe's close waits
        # on its dispatcher thread, which deadlocked there (see _KEPT). A daemon thread closes them.
        try:
            tasks = self._tasks()
            if tasks:
                threading.Thread(target=_close_tasks, args=(tasks,), daemon=True).start()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):  # picklable for DataLoader workers: models are rebuilt lazily
        state = self.__dict__.copy()
        state.update(_lock=None, _landmarker=None, _crop_landmarker=None, _detector=None, _retina=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
        _LIVE.add(self)

    # -- detection ----------------------------------------------------------------------------
    def _mediapipe(self, rgb: np.ndarray, crop_mode: bool = False) -> list[_Raw]:
        import mediapipe as mp

        h, w = rgb.shape[:2]
        if min(h, w) < 8:
            return []
        img = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        if crop_mode:
            if self._crop_landmarker is None:
                self._crop_landmarker = self._make_landmarker(1)
            res = self._crop_landmarker.detect(img)
            dets = []
        else:
            if self._landmarker is None:
                self._landmarker = self._make_landmarker(self.max_faces)
                self._detector = self._make_detector()
            res = self._landmarker.detect(img)
            dets = []
            if res.face_landmarks:
                for d in self._detector.detect(img).detections:
                    bb = d.bounding_box
                    dets.append((np.array([bb.origin_x, bb.origin_y, bb.origin_x + bb.width, bb.origin_y + bb.height],
                                          np.float64), float(d.categories[0].score) if d.categories else 1.0))
        out = []
        for lms in res.face_landmarks:
            pts = np.array([(p.x * w, p.y * h) for p in lms], np.float64)
            box = np.concatenate([pts.min(0), pts.max(0)])
            score = 1.0
            if dets:
                ious = [_iou(box, b) for b, _ in dets]
                k = int(np.argmax(ious))
                # a landmarked face the detector did not report keeps a neutral score
                score = dets[k][1] if ious[k] > 0.3 else self.min_detection_confidence
            out.append(_Raw(pts, box, score, "mediapipe"))
        return out

    def _retinaface_faces(self, rgb: np.ndarray, known: list[_Raw]) -> list[_Raw]:
        out = []
        for det in self.retinaface.detect(rgb):
            if any(_iou(det.box, k.box) > 0.3 for k in known):
                continue
            # re-run the landmarker on a square crop around the box, where the face is large
            crop, affine = square_crop(rgb, det.box, 0.6, 256)
            got = self._mediapipe(crop, crop_mode=True)
            if got:
                inv = cv2.invertAffineTransform(affine)
                pts = got[0].landmarks @ inv[:, :2].T + inv[:, 2]
                box = np.concatenate([pts.min(0), pts.max(0)])
                if _iou(box, det.box) > 0.3:
                    out.append(_Raw(pts, box, det.score, "retinaface+mediapipe"))
                    continue
            out.append(_Raw(det.landmarks, det.box, det.score, "retinaface"))
            if len(out) + len(known) >= self.max_faces:
                break
        return out

    def detect(self, image: np.ndarray, camera: geo.Camera | None = None) -> list[Face]:
        """Faces of an (H, W, 3) uint8 RGB image, largest first; [] when there is none."""
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
            raise UsageError(f"FaceAnalyzer.detect expects an (H, W, 3) uint8 RGB array, got {image.shape} "
                             f"{image.dtype}; load files with gazeclip.faces.load_image")
        image = np.ascontiguousarray(image[:, :, :3])
        h, w = image.shape[:2]
        if min(h, w) < 16:  # nothing a face detector can use; no exception for tiny images
            return []
        scale = min(1.0, self.detect_max_side / max(h, w))
        small = image if scale == 1.0 else cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                      interpolation=cv2.INTER_AREA)
        with self._lock, native_logs_silenced():  # MediaPipe's C++ log lines: only with `gazeclip -v`
            raws = self._mediapipe(small)
            if self.fallback == "always" or (self.fallback == "retinaface" and not raws):
                raws += self._retinaface_faces(small, raws)
        for r in raws:  # back to original-image pixels
            r.landmarks = r.landmarks / scale
            r.box = r.box / scale
        # design choice, not from the paper: order by area weighted by confidence (area x (0.5 + score))
        raws.sort(key=lambda r: -(r.box[2] - r.box[0]) * (r.box[3] - r.box[1]) * (0.5 + r.score))
        raws = raws[: self.max_faces]
        cam = camera or self.camera or geo.Camera.pseudo(w, h)
        return [self._face(image, r, cam) for r in raws]

    def face_from_points(self, image: np.ndarray, landmarks: np.ndarray, box=None, score: float = 1.0,
                         detector: str = "external", camera: geo.Camera | None = None) -> Face:
        """A `Face` from landmarks found elsewhere: 478 MediaPipe points or RetinaFace's 5
        (image-left eye, image-right eye, nose, mouth left, mouth right), in image pixels."""
        lms = np.asarray(landmarks, np.float64)
        if lms.ndim != 2 or lms.shape[1] != 2 or lms.shape[0] not in (5, 468, 478):
            raise UsageError(f"landmarks must be (478, 2), (468, 2) or (5, 2) pixels, got {lms.shape}")
        box = np.concatenate([lms.min(0), lms.max(0)]) if box is None else np.asarray(box, np.float64)
        h, w = image.shape[:2]
        return self._face(image, _Raw(lms, box, float(score), detector), camera or self.camera or geo.Camera.pseudo(w, h))

    def _face(self, image: np.ndarray, raw: _Raw, cam: geo.Camera) -> Face:
        h, w = image.shape[:2]
        box = raw.box.copy()
        box[[0, 2]] = np.clip(box[[0, 2]], 0, w)
        box[[1, 3]] = np.clip(box[[1, 3]], 0, h)
        five = raw.landmarks.shape[0] == 5
        if five:
            head = geo.head_pose(raw.landmarks, self.model5, cam)
            center = self._center5
        else:
            pnp = [i for i in geo.PNP_POINTS_478 if i < len(raw.landmarks)]
            head = geo.head_pose(raw.landmarks[pnp], self.model478[pnp], cam)
            center = self._center478
        crop, affine = square_crop(image, raw.box, self.margin, self.crop_size, self.antialias)
        crop_lms = raw.landmarks @ affine[:, :2].T + affine[:, 2]
        norm_face = norm_rot = None
        if head is not None and self.normalise:
            n = geo.eth_normalise(image, head, center, cam, size=self.norm_size, antialias=self.antialias)
            norm_face, norm_rot = n.image, n.rotation
        return Face(box=tuple(float(v) for v in box), score=float(raw.score), landmarks=raw.landmarks,
                    detector=raw.detector, head=head, clip_crop=crop, crop_landmarks=crop_lms,
                    norm_face=norm_face, norm_rotation=norm_rot, camera=cam.matrix.copy())
