"""The embedded toy model: a small, genuinely trained text-to-image latent diffusion model (Fashion-MNIST).

It is built from Stable Diffusion's own classes (``AutoencoderKL``, ``CLIPTextModel`` + ``CLIPTokenizer`` with
the real CLIP BPE vocabulary, ``UNet2DConditionModel`` with cross-attention, scaled_linear betas,
ε-prediction) and saved as a diffusers ``StableDiffusionPipeline`` folder, so ``hpyn.models.load_model("toy")``
loads it with the same code (the ``sd`` adapter) as ``sd15``. 32x32 RGB images, 8x8x4 latents.

Registered once per layer: as the model ``"toy"`` in ``hpyn.models``, and its evaluation assets (prompt set,
reference, CLIP, classifier extractor, all named ``"toy"``/``"toy-classifier"``) in ``objectives.toy``.

Shipped files (``hpyn/toy/weights/``, all rebuilt by ``python -m hpyn.toy.train --out hpyn/toy/weights``):

    pipeline/                diffusers StableDiffusionPipeline (unet/ vae/ text_encoder/ tokenizer/ scheduler/)
    clip/                    transformers CLIPModel + CLIPTokenizer + CLIPImageProcessor, for CLIP score
                             (its text tower is the pipeline's frozen text encoder)
    classifier.safetensors   small CNN (hpyn.toy.nets.Classifier) over [-1, 1] 32x32 RGB, 10 classes
    reference.npz            images uint8 [2000, 3, 32, 32], labels int64, test_index: held-out t10k images
    train_report.json        training command, seconds per stage, test accuracies, VAE noise tolerance
    quality.json             measured quality (``python benchmarks/toy_quality.py``), the regression baseline

Helpers::

    from hpyn import toy
    toy.PIPELINE, toy.CLIP, toy.CLASSIFIER, toy.REFERENCE        # paths
    toy.load_classifier(); toy.load_reference(); toy.load_clip()
    toy.classify(images_uint8_NCHW) -> labels;  toy.label_of_prompt("a photo of a bag") -> 8
    toy.prompts(n, seed=0) -> (prompts, labels)                     # class-balanced captions
"""
from __future__ import annotations

from pathlib import Path

from .data import CLASS_NAMES, RESOLUTION, TEMPLATES, caption

__all__ = ["WEIGHTS", "PIPELINE", "CLIP", "CLASSIFIER", "REFERENCE", "CLASS_NAMES", "TEMPLATES", "RESOLUTION",
           "caption", "prompts", "label_of_prompt", "load_classifier", "classify", "load_reference", "load_clip"]

WEIGHTS = Path(__file__).resolve().parent / "weights"
PIPELINE = WEIGHTS / "pipeline"
CLIP = WEIGHTS / "clip"
CLASSIFIER = WEIGHTS / "classifier.safetensors"
REFERENCE = WEIGHTS / "reference.npz"


def _need(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: rebuild the toy weights with "
                                "`python -m hpyn.toy.train --out hpyn/toy/weights`")
    return path


def prompts(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """n captions cycling through the 10 classes (label i % 10) with seeded template choice."""
    import random
    rng = random.Random(seed)
    labels = [i % len(CLASS_NAMES) for i in range(n)]
    return [caption(c, rng.randrange(len(TEMPLATES))) for c in labels], labels


def label_of_prompt(prompt: str) -> int:
    """The class a caption names (longest class name that occurs in it); ValueError if none."""
    text = prompt.lower()
    hits = [(len(name), i) for i, name in enumerate(CLASS_NAMES) if name in text]
    if not hits:
        raise ValueError(f"no Fashion-MNIST class name in {prompt!r}; classes: {list(CLASS_NAMES)}")
    return max(hits)[1]


def load_classifier(path: str | Path | None = None, device=None):
    """The shipped CNN (eval mode, float32)."""
    from safetensors.torch import load_file
    from .nets import Classifier
    model = Classifier()
    state = load_file(str(_need(Path(path) if path else CLASSIFIER)))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.to(device or "cpu").eval()


def classify(images, classifier=None, batch_size: int = 500):
    """Predicted labels (int64 tensor [N]) for uint8 images [N, 3, 32, 32]."""
    import torch
    classifier = classifier or load_classifier()
    dev = next(classifier.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].to(dev).float() / 127.5 - 1.0
            out.append(classifier(x).argmax(1).cpu())
    return torch.cat(out)


def load_reference(path: str | Path | None = None):
    """(images uint8 tensor [N, 3, 32, 32], labels int64 tensor [N]) of the shipped held-out test subset."""
    import numpy as np
    import torch
    with np.load(_need(Path(path) if path else REFERENCE)) as z:
        return torch.from_numpy(z["images"]), torch.from_numpy(z["labels"])


def load_clip(path: str | Path | None = None, device=None):
    """(CLIPModel, CLIPTokenizer) of the shipped small CLIP, float32, eval mode.

    Image input: 32x32 RGB scaled to [-1, 1] (i.e. (x/255 - 0.5) / 0.5, see clip/preprocessor_config.json).
    """
    from transformers import CLIPModel, CLIPTokenizer
    p = _need(Path(path) if path else CLIP)
    return CLIPModel.from_pretrained(p).to(device or "cpu").eval(), CLIPTokenizer.from_pretrained(p)
