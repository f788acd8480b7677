"""Grad-CAM of a trained run on one image: find the face, build its batch, explain the predicted
(or a chosen) class on the image tower and write the overlay PNG (the paper's Figure 6).
`gazeclip explain` parses its arguments and calls `explain`."""
from __future__ import annotations


def explain(run, image: str, out: str, face: int = 0, block: int = -2, target: str | None = None) -> dict:
    import numpy as np

    from ..data.dataset import FaceDataset, FaceGazeSource, SampleSet, _empty_arrays, face_arrays, collate
    from .gradcam import gradcam, overlay_png

    size = run.preprocess.size
    source = FaceGazeSource(run.cfg.faces, run.cfg.gaze_estimator, None, run.gaze_dim)
    res = source.analyze([image])[0]
    if res.error:
        raise ValueError(res.error)
    if res.faces:
        if face >= len(res.faces):
            raise ValueError(f"{image}: has {len(res.faces)} face(s); --face {face} does not exist")
        fg = res.faces[face]
        arr = face_arrays(fg, size, source.gaze_dim)
        display, note = fg.face.clip_crop, f"face {face} of {len(res.faces)}"
    else:
        from ..data.dataset import load_rgb

        img = getattr(res, "_image", None)
        img = img if img is not None else load_rgb(image)
        arr = _empty_arrays(img, size, source.gaze_dim)
        display, note = arr[0], "no face found: whole image"
    s = SampleSet([image], [""], arr[0][None], arr[1][None], arr[2][None], arr[3][None], np.array([arr[4]]),
                  arr[5][None], np.array([len(res.faces)]), quality=arr[6][None])
    batch, _, _ = collate([FaceDataset(s, run.taxonomy, run.preprocess)[0]])
    classes = list(run.taxonomy.classes)
    t = None
    if target is not None:
        if target not in classes:
            raise ValueError(f"--target {target!r} is not a class of this run: {', '.join(classes)}")
        t = classes.index(target)
    cam = gradcam(run.model, batch.to(run.device), block=block, target=t)
    overlay_png(display, cam, classes, out, title=f"{image.split('/')[-1]}: {note}; p_fake {cam.p_fake:.3f}")
    return {"path": image, "class": classes[cam.target], "prob": float(cam.probs[cam.target]),
            "p_fake": cam.p_fake, "out": out}
