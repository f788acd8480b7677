"""Landmark-based forgeries on MobileStyleGAN source faces: identity swap (Delaunay warp +
Poisson blending), gaze redirection (iris displacement inside the eye opening), eye/mouth region
transplant, and whole-image landmark morphing of two faces."""
from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay

from .faceops import FACE_OVAL, LEFT_EYE, LEFT_IRIS, MOUTH, RIGHT_EYE, RIGHT_IRIS, FaceLM


def piecewise_warp(src: np.ndarray, src_pts: np.ndarray, dst_pts: np.ndarray,
                   out_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Warp `src` so that src_pts land on dst_pts (piecewise affine over the Delaunay triangulation
    of dst_pts). Returns (warped image, uint8 mask of the triangulated area)."""
    h, w = out_hw
    tri = Delaunay(dst_pts)
    x0, y0 = np.floor(dst_pts.min(0)).astype(int).clip(0)
    x1, y1 = np.ceil(dst_pts.max(0)).astype(int)
    x1, y1 = min(x1, w - 1), min(y1, h - 1)
    ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1]
    p = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    s = tri.find_simplex(p)
    ok = s >= 0
    p, s = p[ok], s[ok]
    t = tri.transform[s]
    b = np.einsum("nij,nj->ni", t[:, :2], p - t[:, 2])
    bary = np.concatenate([b, 1 - b.sum(1, keepdims=True)], 1)
    verts = tri.simplices[s]
    sp = np.einsum("nk,nkj->nj", bary, src_pts[verts])
    map_x = np.full((h, w), -1, np.float32)
    map_y = np.full((h, w), -1, np.float32)
    yi, xi = p[:, 1].astype(int), p[:, 0].astype(int)
    map_x[yi, xi], map_y[yi, xi] = sp[:, 0], sp[:, 1]
    mask = np.zeros((h, w), np.uint8)
    mask[yi, xi] = 255
    warped = cv2.remap(src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return warped, mask


def _hull_mask(pts: np.ndarray, hw: tuple[int, int], erode: int = 0) -> np.ndarray:
    m = np.zeros(hw, np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(pts.astype(np.int32)), 255)
    if erode > 0:
        m = cv2.erode(m, np.ones((erode, erode), np.uint8))
    return m


def _clone(src: np.ndarray, dst: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Poisson blending (cv2.seamlessClone, NORMAL_CLONE) of src into dst under mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return dst.copy()
    # seamlessClone needs the mask's bounding box inside the image with a 1-pixel margin
    mask = mask.copy()
    mask[:2], mask[-2:], mask[:, :2], mask[:, -2:] = 0, 0, 0, 0
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    center = (int((x0 + x1 + 1) // 2), int((y0 + y1 + 1) // 2))
    return cv2.seamlessClone(np.ascontiguousarray(src), np.ascontiguousarray(dst), mask, center,
                             cv2.NORMAL_CLONE)


def _border_points(h: int, w: int) -> np.ndarray:
    xs, ys = [0, w / 2, w - 1], [0, h / 2, h - 1]
    return np.array([[x, y] for x in xs for y in ys if not (x == w / 2 and y == h / 2)], np.float64)


def identity_swap(target: np.ndarray, t_lm: FaceLM, source: np.ndarray, s_lm: FaceLM) -> np.ndarray:
    """The source's inner face, warped to the target's landmark geometry, Poisson-blended in."""
    h, w = target.shape[:2]
    warped, tri_mask = piecewise_warp(source, s_lm.landmarks, t_lm.landmarks, (h, w))
    side = max(np.ptp(t_lm.landmarks[:, 0]), np.ptp(t_lm.landmarks[:, 1]))
    mask = _hull_mask(t_lm.landmarks[FACE_OVAL], (h, w), erode=max(3, int(side * 0.06)))
    mask &= tri_mask
    return _clone(warped, target, mask)


def region_transplant(target: np.ndarray, t_lm: FaceLM, donor: np.ndarray, d_lm: FaceLM,
                      region: str) -> np.ndarray:
    """Eyes (both, with brows margin) or mouth of the donor, similarity-aligned on that region's
    landmarks, Poisson-blended into the target."""
    idx = LEFT_EYE + RIGHT_EYE + LEFT_IRIS + RIGHT_IRIS if region == "eyes" else MOUTH
    m, _ = cv2.estimateAffinePartial2D(d_lm.landmarks[idx].astype(np.float32),
                                       t_lm.landmarks[idx].astype(np.float32), method=cv2.LMEDS)
    if m is None:
        raise ValueError("region alignment failed")
    h, w = target.shape[:2]
    warped = cv2.warpAffine(donor, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    pts = t_lm.landmarks[idx]
    if region == "eyes":
        masks = []
        for eye in (LEFT_EYE, RIGHT_EYE):
            e = t_lm.landmarks[eye]
            c = e.mean(0)
            masks.append(_hull_mask(c + (e - c) * np.array([1.5, 2.2]), (h, w)))
        mask = masks[0] | masks[1]
    else:
        c = pts.mean(0)
        mask = _hull_mask(c + (pts - c) * 1.35, (h, w))
    return _clone(warped, target, mask)


def gaze_redirect(img: np.ndarray, lm: FaceLM, dx: float, dy: float) -> np.ndarray:
    """Move both irises by (dx, dy) eye-widths inside the eye openings (a smooth displacement
    field around each iris, confined to a feathered eye mask), so the gaze direction changes."""
    h, w = img.shape[:2]
    out = img.astype(np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    for eye, iris in ((LEFT_EYE, LEFT_IRIS), (RIGHT_EYE, RIGHT_IRIS)):
        e = lm.landmarks[eye]
        width = float(np.ptp(e[:, 0]))
        c = lm.landmarks[iris[0]]
        r = float(np.linalg.norm(lm.landmarks[iris[1:]] - c, axis=1).mean())
        shift = np.array([dx * width, dy * width], np.float32)
        sigma = 1.3 * r
        g = np.exp(-(((xs - c[0] - shift[0]) ** 2 + (ys - c[1] - shift[1]) ** 2) / (2 * sigma ** 2)))
        map_x = (xs - shift[0] * g).astype(np.float32)
        map_y = (ys - shift[1] * g).astype(np.float32)
        moved = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        ec = e.mean(0)
        mask = _hull_mask(ec + (e - ec) * np.array([1.0, 1.1]), (h, w)).astype(np.float32) / 255
        k = max(3, int(r * 0.6) | 1)
        mask = cv2.GaussianBlur(mask, (k, k), 0)[..., None]
        out = out * (1 - mask) + moved * mask
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def morph(a: np.ndarray, a_lm: FaceLM, b: np.ndarray, b_lm: FaceLM, alpha: float) -> np.ndarray:
    """Whole-image landmark morph: both faces warped to the interpolated geometry and cross-dissolved."""
    h, w = a.shape[:2]
    border = _border_points(h, w)
    pa = np.concatenate([a_lm.landmarks, border])
    pb = np.concatenate([b_lm.landmarks, border])
    pm = (1 - alpha) * pa + alpha * pb
    wa, _ = piecewise_warp(a, pa, pm, (h, w))
    wb, _ = piecewise_warp(b, pb, pm, (h, w))
    return np.clip((1 - alpha) * wa.astype(np.float32) + alpha * wb.astype(np.float32) + 0.5, 0, 255).astype(np.uint8)
