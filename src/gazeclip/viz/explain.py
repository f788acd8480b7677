"""Grad-CAM of a trained run on one image: find the face, build its batch, explain the predicted
(or a chosen) class on the image tower and write the overlay PNG (the paper's Figure 6).
`gazeclip explain` parses its arguments and calls `explain`; the web page's overlay
(`gazeclip serve`, explain=1) calls `explain_faces`."""
from __future__ import annotations

import numpy as np

from ..errors import UsageError


def _cam_of(run, arr: tuple, n_faces: int, label: str, block: int = -2, target: int | None = None):
    """Grad-CAM of one face's arrays (data.dataset.face_arrays' tuple) through the run's model."""
    from ..data.dataset import FaceDataset, SampleSet, collate
    from .gradcam import gradcam

    s = SampleSet([label], [""], arr[0][None], arr[1][None], arr[2][None], arr[3][None], np.array([arr[4]]),
                  arr[5][None], np.array([n_faces]), quality=arr[6][None])
    batch, _, _ = collate([FaceDataset(s, run.taxonomy, run.preprocess)[0]])
    return gradcam(run.model, batch.to(run.device), block=block, target=target)


def crop_region(face) -> list[float]:
    """[x0, y0, x1, y1] in image pixels of the face's CLIP crop (the square the map covers): the
    crop is the image scaled and shifted, so its landmarks give the transform back."""
    src = np.asarray(face.landmarks, np.float64)
    dst = np.asarray(face.crop_landmarks, np.float64)
    ds, dd = src - src.mean(0), dst - dst.mean(0)
    scale = float((ds * dd).sum() / max((ds ** 2).sum(), 1e-12))
    shift = dst.mean(0) - scale * src.mean(0)
    side = face.clip_crop.shape[0]
    x0, y0 = -shift / scale
    return [round(float(v), 1) for v in (x0, y0, x0 + side / scale, y0 + side / scale)]


def explain_faces(run, source, image: np.ndarray, label: str = "<image>") -> list[dict]:
    """The Grad-CAM of the predicted class of every face of an RGB image, in predict's face order:
    {"region": [x0, y0, x1, y1] image pixels the map covers, "png": PNG bytes (gradcam.heatmap_png),
    "class": the class explained}. A whole-image run's one "face" is the centre square it crops."""
    from ..data.dataset import whole_image_arrays, face_arrays
    from ..inference.inputs import analyze_array
    from .gradcam import heatmap_png

    res = analyze_array(source, image, label)
    size, classes = run.preprocess.size, list(run.taxonomy.classes)
    if res.error:
        return []
    if source.mode == "none":
        h, w = image.shape[:2]
        side = min(h, w)
        x0, y0 = (w - side) // 2, (h - side) // 2
        items = [(whole_image_arrays(image, size, source.gaze_dim), [x0, y0, x0 + side, y0 + side])]
    else:
        items = [(face_arrays(fg, size, source.gaze_dim), crop_region(fg.face)) for fg in res.faces]
    out = []
    for arr, region in items:
        cam = _cam_of(run, arr, len(res.faces), label)
        out.append({"region": region, "png": heatmap_png(cam), "class": classes[cam.target]})
    return out


def explain(run, image: str, out: str, face: int = 0, block: int = -2, target: str | None = None) -> dict:
    from ..data.dataset import FaceGazeSource, whole_image_arrays, face_arrays
    from .gradcam import overlay_png

    size = run.preprocess.size
    source = FaceGazeSource(run.cfg.faces, run.cfg.gaze_estimator, None, run.gaze_dim)
    res = source.analyze([image])[0]
    if res.error:
        raise UsageError(res.error)
    if res.faces:
        if face >= len(res.faces):
            raise UsageError(f"{image}: has {len(res.faces)} face(s); --face {face} does not exist")
        fg = res.faces[face]
        arr = face_arrays(fg, size, source.gaze_dim)
        display, note = fg.face.clip_crop, f"face {face} of {len(res.faces)}"
    else:
        from ..data.dataset import load_rgb

        img = res.image
        img = img if img is not None else load_rgb(image)
        arr = whole_image_arrays(img, size, source.gaze_dim)
        display, note = arr[0], "no face found: whole image"
    classes = list(run.taxonomy.classes)
    t = None
    if target is not None:
        if target not in classes:
            raise UsageError(f"--target {target!r} is not a class of this run: {', '.join(classes)}")
        t = classes.index(target)
    cam = _cam_of(run, arr, len(res.faces), image, block, t)
    overlay_png(display, cam, classes, out, title=f"{image.split('/')[-1]}: {note}; p_fake {cam.p_fake:.3f}")
    return {"path": image, "class": classes[cam.target], "prob": float(cam.probs[cam.target]),
            "p_fake": cam.p_fake, "out": out}
