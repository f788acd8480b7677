"""ImageFaces <-> JSON (the CLI's `--json` schema) and <-> flat arrays (the on-disk cache)."""
from __future__ import annotations

import json
import math

import numpy as np

from ..records import Face, FaceGaze, Gaze, HeadPose, ImageFaces

SCHEMA_VERSION = 1


def _deg(x: float) -> float:
    return round(math.degrees(x), 3)


def to_json_dict(imf: ImageFaces, landmarks: bool = False) -> dict:
    """The `gazeclip gaze --json` record of one image (angles in degrees, pixels of the original)."""
    if imf.error is not None:
        return {"path": imf.path, "error": imf.error}
    faces = []
    for fg in imf.faces:
        f, g = fg.face, fg.gaze
        d = {"box": [round(float(v), 2) for v in f.box], "score": round(float(f.score), 4), "detector": f.detector,
             "n_landmarks": int(len(f.landmarks))}
        if f.head is not None:
            d["head"] = {"pitch": _deg(f.head.pitch), "yaw": _deg(f.head.yaw), "roll": _deg(f.head.roll),
                         "translation_mm": [round(float(v), 1) for v in f.head.tvec]}
        else:
            d["head"] = None
        if g is not None:
            d["gaze"] = {"pitch": _deg(g.pitch), "yaw": _deg(g.yaw),
                         "vector": [round(float(v), 5) for v in g.vector], "estimator": g.estimator}
        else:
            d["gaze"] = None
        if landmarks:
            d["landmarks"] = np.round(np.asarray(f.landmarks, np.float64), 2).tolist()
        faces.append(d)
    out = {"path": imf.path, "faces": faces}
    if imf.size is not None:
        out["size"] = list(imf.size)
    return out


# -- flat arrays for the cache -------------------------------------------------------------------

def to_arrays(imf: ImageFaces, crops: bool = True) -> dict[str, np.ndarray]:
    meta = {"version": SCHEMA_VERSION, "path": imf.path, "size": imf.size, "error": imf.error, "faces": []}
    arrays: dict[str, np.ndarray] = {}
    for i, fg in enumerate(imf.faces):
        f, g = fg.face, fg.gaze
        m = {"box": list(f.box), "score": f.score, "detector": f.detector,
             "head": None if f.head is None else [f.head.pitch, f.head.yaw, f.head.roll],
             "gaze": None if g is None else [g.pitch, g.yaw, g.estimator],
             "crops": crops}
        meta["faces"].append(m)
        p = f"f{i}_"
        arrays[p + "landmarks"] = np.asarray(f.landmarks, np.float64)
        arrays[p + "crop_landmarks"] = np.asarray(f.crop_landmarks, np.float64)
        if f.head is not None:
            arrays[p + "rvec"] = np.asarray(f.head.rvec, np.float64)
            arrays[p + "tvec"] = np.asarray(f.head.tvec, np.float64)
        if crops:
            arrays[p + "clip_crop"] = np.asarray(f.clip_crop, np.uint8)
            if f.norm_face is not None:
                arrays[p + "norm_face"] = np.asarray(f.norm_face, np.uint8)
        if f.norm_rotation is not None:
            arrays[p + "norm_rotation"] = np.asarray(f.norm_rotation, np.float64)
        if f.camera is not None:
            arrays[p + "camera"] = np.asarray(f.camera, np.float64)
        if g is not None:
            arrays[p + "gaze_vector"] = np.asarray(g.vector, np.float64)
            arrays[p + "gaze_features"] = np.asarray(g.features, np.float32)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return arrays


def from_arrays(arrays) -> ImageFaces:
    meta = json.loads(bytes(np.asarray(arrays["meta"], np.uint8)).decode())
    if meta.get("version") != SCHEMA_VERSION:
        raise ValueError(f"cache schema {meta.get('version')} != {SCHEMA_VERSION}")
    faces = []
    for i, m in enumerate(meta["faces"]):
        p = f"f{i}_"

        def get(key, _p=p):
            k = _p + key
            return np.array(arrays[k]) if k in arrays else None

        head = None
        if m["head"] is not None:
            head = HeadPose(pitch=m["head"][0], yaw=m["head"][1], roll=m["head"][2], rvec=get("rvec"), tvec=get("tvec"))
        crop = get("clip_crop")
        face = Face(box=tuple(m["box"]), score=m["score"], landmarks=get("landmarks"), detector=m["detector"],
                    head=head, clip_crop=crop if crop is not None else np.zeros((0, 0, 3), np.uint8),
                    crop_landmarks=get("crop_landmarks"), norm_face=get("norm_face"),
                    norm_rotation=get("norm_rotation"), camera=get("camera"))
        gaze = None
        if m["gaze"] is not None:
            gaze = Gaze(pitch=m["gaze"][0], yaw=m["gaze"][1], vector=get("gaze_vector"),
                        features=get("gaze_features"), estimator=m["gaze"][2])
        faces.append(FaceGaze(face=face, gaze=gaze))
    size = tuple(meta["size"]) if meta.get("size") is not None else None
    return ImageFaces(path=meta["path"], faces=faces, size=size, error=meta.get("error"))
