"""3-D face model, head pose by PnP, and ETH-XGaze data normalisation.

Frames: the camera frame is OpenCV's (x right, y down, z forward, millimetres). The face model is
MediaPipe's canonical face mesh (read from the FaceLandmarker bundle), converted to that frame, so
a face looking straight at the camera has head rotation = identity.

Angle convention (shared by head pose and gaze, as in ETH-XGaze): a direction d (unit, pointing
out of the face) has pitch = asin(-d_y) and yaw = atan2(-d_x, -d_z); looking straight at the camera
is (0, 0); positive pitch is up; positive yaw is towards the image's left (the subject's right).
"""
from __future__ import annotations

import functools
import zipfile
from dataclasses import dataclass

import cv2
import numpy as np

from ..records import HeadPose

# MediaPipe mesh indices (subject's right eye is on the image left in an unmirrored photo).
R_EYE_CORNERS = (33, 133)      # outer, inner: subject's right eye
L_EYE_CORNERS = (362, 263)     # inner, outer: subject's left eye
NOSE_POINTS = (1, 4, 98, 327)  # tip and base/alae of the nose (ETH-XGaze uses the nose region)
MOUTH_CORNERS = (61, 291)
CHIN = 152
R_IRIS = tuple(range(468, 473))  # centre first
L_IRIS = tuple(range(473, 478))
# Points for PnP: eye corners, nose, mouth corners, chin, forehead, cheeks, temples (mostly rigid;
# not the lips' inner contour or the jaw line, which move with expression).
PNP_POINTS_478 = (33, 133, 362, 263, 1, 4, 98, 327, 61, 291, 152, 10, 168, 6, 197, 234, 454, 127, 356)
# RetinaFace order: image-left eye, image-right eye, nose, image-left mouth, image-right mouth.
FIVE_POINT_FROM_478 = ((33, 133), (362, 263), (4,), (61,), (291,))

# ETH-XGaze normalisation constants (Zhang et al., ECCV 2020).
ETH_FOCAL = 960.0
ETH_DISTANCE = 600.0
ETH_SIZE = 224


def _varint(b: bytes, i: int) -> tuple[int, int]:
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


def _proto_fields(b: bytes):
    """Minimal protobuf wire-format reader (the bundle's metadata has no Python bindings)."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        field, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wt}")
        yield field, wt, v


@functools.lru_cache(maxsize=4)
def canonical_face_model(task_path: str | None = None) -> np.ndarray:
    """(468, 3) MediaPipe canonical face mesh in millimetres, camera-frame axes (x right, y down,
    z away from the viewer), from `geometry_pipeline_metadata_landmarks.binarypb` in the bundle."""
    if task_path is None:
        from ..weights import asset_path

        task_path = str(asset_path("face-landmarker"))
    with zipfile.ZipFile(task_path) as zf:
        data = zf.read("geometry_pipeline_metadata_landmarks.binarypb")
    # GeometryPipelineMetadata.canonical_mesh (field 1) -> Mesh3d.vertex_buffer (field 3: x, y, z, u, v)
    mesh = next(v for f, wt, v in _proto_fields(data) if f == 1 and wt == 2)
    chunks = []
    for f, wt, v in _proto_fields(mesh):
        if f == 3:
            chunks.append(v)  # packed (wt 2) or one float each (wt 5): same bytes either way
    verts = np.frombuffer(b"".join(chunks), dtype="<f4").reshape(-1, 5)[:, :3].astype(np.float64)
    # centimetres, OpenGL axes (y up, z to the viewer) -> millimetres, OpenCV axes
    return verts * np.array([10.0, -10.0, -10.0])


def five_point_model(model478: np.ndarray) -> np.ndarray:
    """3-D model of RetinaFace's 5 points, taken from the same mesh."""
    return np.stack([model478[list(ix)].mean(0) for ix in FIVE_POINT_FROM_478])


@dataclass
class Camera:
    """Pinhole intrinsics. `pseudo(w, h)`: focal = max(H, W), principal point at the centre."""

    matrix: np.ndarray                 # (3, 3)
    dist: np.ndarray | None = None     # OpenCV distortion coefficients

    @classmethod
    def pseudo(cls, width: int, height: int) -> "Camera":
        f = float(max(width, height))
        return cls(np.array([[f, 0, width / 2.0], [0, f, height / 2.0], [0, 0, 1.0]]))


def direction_to_pitchyaw(d: np.ndarray) -> tuple[float, float]:
    d = np.asarray(d, np.float64)
    d = d / max(np.linalg.norm(d), 1e-12)
    return float(np.arcsin(np.clip(-d[1], -1, 1))), float(np.arctan2(-d[0], -d[2]))


def pitchyaw_to_direction(pitch: float, yaw: float) -> np.ndarray:
    return np.array([-np.cos(pitch) * np.sin(yaw), -np.sin(pitch), -np.cos(pitch) * np.cos(yaw)])


def head_pose(image_points: np.ndarray, model_points: np.ndarray, camera: Camera) -> HeadPose | None:
    """PnP of 2-D landmarks against the 3-D model; None when OpenCV finds no solution."""
    obj = np.ascontiguousarray(model_points, np.float64).reshape(-1, 1, 3)
    img = np.ascontiguousarray(image_points, np.float64).reshape(-1, 1, 2)
    dist = camera.dist if camera.dist is not None else np.zeros(5)
    # EPnP for a start that cannot flip behind the camera, then Levenberg-Marquardt refinement
    ok, rvec, tvec = cv2.solvePnP(obj, img, camera.matrix, dist, flags=cv2.SOLVEPNP_EPNP)
    if not ok:
        return None
    if tvec[2, 0] < 0:  # mirror solution: put the face in front of the camera
        rvec, tvec = rvec * 0, np.array([[0.0], [0.0], [1000.0]])
    ok, rvec, tvec = cv2.solvePnP(obj, img, camera.matrix, dist, rvec, tvec, useExtrinsicGuess=True,
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or not np.all(np.isfinite(rvec)) or tvec[2, 0] <= 0:
        return None
    rot = cv2.Rodrigues(rvec)[0]
    pitch, yaw = direction_to_pitchyaw(rot @ np.array([0.0, 0.0, -1.0]))  # the face's forward axis
    roll = float(np.arctan2(rot[1, 0], rot[0, 0]))  # tilt of the face's x axis in the image plane
    return HeadPose(pitch=pitch, yaw=yaw, roll=roll, rvec=rvec.reshape(3), tvec=tvec.reshape(3))


@dataclass
class Normalised:
    image: np.ndarray      # (S, S, 3) uint8 RGB
    rotation: np.ndarray   # (3, 3) camera -> normalised frame
    warp: np.ndarray       # (3, 3) image -> normalised image homography
    face_center: np.ndarray  # (3,) millimetres, camera frame


def eth_normalise(image: np.ndarray, head: HeadPose, face_center_model: np.ndarray, camera: Camera,
                  focal: float = ETH_FOCAL, distance: float = ETH_DISTANCE, size: int = ETH_SIZE,
                  antialias: bool = True) -> Normalised:
    """ETH-XGaze data normalisation: rotate and scale a virtual camera so that it looks at the face
    centre from `distance` mm with focal `focal`, the head's x axis horizontal; warp to size x size."""
    rot_head = cv2.Rodrigues(np.asarray(head.rvec, np.float64))[0]
    center = rot_head @ np.asarray(face_center_model, np.float64) + np.asarray(head.tvec, np.float64)
    dist = float(np.linalg.norm(center))
    forward = center / dist
    down = np.cross(forward, rot_head[:, 0])
    down /= np.linalg.norm(down)
    right = np.cross(down, forward)
    right /= np.linalg.norm(right)
    rot = np.stack([right, down, forward])  # rows: camera -> normalised
    cam_norm = np.array([[focal, 0, size / 2.0], [0, focal, size / 2.0], [0, 0, 1.0]])
    scale = np.diag([1.0, 1.0, distance / dist])
    warp = cam_norm @ scale @ rot @ np.linalg.inv(camera.matrix)
    if antialias:
        out = _warp_antialiased(image, warp, size)
    else:
        out = cv2.warpPerspective(image, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return Normalised(image=out, rotation=rot, warp=warp, face_center=center)


def _warp_antialiased(image: np.ndarray, warp: np.ndarray, size: int) -> np.ndarray:
    """warpPerspective, but when it would shrink the face more than 2x (large photos), the face's
    region is first area-downscaled, so the normalised face does not alias."""
    # design choice, not from the paper: ETH-XGaze warps directly; we pre-shrink to avoid aliasing
    inv = np.linalg.inv(warp)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inv.T
    if np.any(corners[:, 2] <= 0):
        return cv2.warpPerspective(image, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    pts = corners[:, :2] / corners[:, 2:3]
    span = max(pts[:, 0].max() - pts[:, 0].min(), pts[:, 1].max() - pts[:, 1].min())
    factor = 2.0 * size / max(span, 1e-6)  # bring the shrink down to about 2x
    h, w = image.shape[:2]
    if factor >= 1.0:
        return cv2.warpPerspective(image, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    x0, y0 = max(0, int(np.floor(pts[:, 0].min())) - 2), max(0, int(np.floor(pts[:, 1].min())) - 2)
    x1, y1 = min(w, int(np.ceil(pts[:, 0].max())) + 2), min(h, int(np.ceil(pts[:, 1].max())) + 2)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return cv2.warpPerspective(image, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    rw, rh = max(1, round((x1 - x0) * factor)), max(1, round((y1 - y0) * factor))
    roi = cv2.resize(image[y0:y1, x0:x1], (rw, rh), interpolation=cv2.INTER_AREA)
    # roi pixel (u, v) <- image pixel ((u + .5) / fx - .5 + x0, ...): compose with the warp
    fx, fy = rw / (x1 - x0), rh / (y1 - y0)
    to_img = np.array([[1 / fx, 0, 0.5 / fx - 0.5 + x0], [0, 1 / fy, 0.5 / fy - 0.5 + y0], [0, 0, 1.0]])
    return cv2.warpPerspective(roi, warp @ to_img, (size, size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT)


def face_center_model(model_points: np.ndarray, five_point: bool) -> np.ndarray:
    """Face centre as in ETH-XGaze: mean of (the eye-corner centre, the nose centre)."""
    if five_point:
        eyes = model_points[[0, 1]].mean(0)
        nose = model_points[2]
    else:
        eyes = model_points[list(R_EYE_CORNERS + L_EYE_CORNERS)].mean(0)
        nose = model_points[list(NOSE_POINTS)].mean(0)
    return (eyes + nose) / 2.0


def project(points3d: np.ndarray, camera: Camera) -> np.ndarray:
    p = np.asarray(points3d, np.float64).reshape(-1, 3)
    uv = (camera.matrix @ p.T).T
    return uv[:, :2] / uv[:, 2:3]
