import json, os, sys, time
import multiprocessing as mp
from pathlib import Path
import numpy as np
sys.path.insert(0, "src")
OUT = Path(os.environ.get("OUT", "/tmp/out"))
CAPS = {"dcgan-msg": 6.5, "sngan-msg": 6.5, "vae-msg": 2.5, "ldm-msg": 3.5, "realnvp-msg": 6.0}


def work(names):
    import torch
    from gazeclip.bench.train import train_forgers
    data = np.load("tmp_devtrain/trainset.npy")
    res = []
    for n in names:
        res += train_forgers(only=[n], root=OUT, threads=2, max_minutes=CAPS[n], data=data)
    return res


if __name__ == "__main__":
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else None
    if steps:  # smoke
        for k in CAPS: CAPS[k] = 0.4
    t = time.time()
    with mp.get_context("fork").Pool(4) as pool:
        out = pool.map(work, [["dcgan-msg"], ["sngan-msg"], ["vae-msg", "ldm-msg"], ["realnvp-msg"]])
    res = [m for r in out for m in r]
    (OUT / "train_log.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1)); print("total wall", time.time() - t)
