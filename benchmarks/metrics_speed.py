"""Speed of the metrics: feature-extraction throughput, metric arithmetic, and the metrics' share of a trial.

    python benchmarks/metrics_speed.py                          # CPU (+ CUDA if available), toy trial if shipped
    python benchmarks/metrics_speed.py --devices cuda --trial sd15-random --n 64
    python benchmarks/metrics_speed.py --quick                  # small batches, for a smoke run

Sections:
1. images/s of the TF-FID Inception (input 32² and 512², resized to 299² inside) and of CLIP image features
   (ViT-B/32 architecture, random weights: speed does not depend on the weights; the toy CLIP if shipped).
2. seconds of FID / KID / PRD arithmetic for N generated vs a reference of 2,000 (random 2048-d features).
3. a trial = generate N images at 5 steps + evaluate them: seconds of each and the metrics' share.
   ``--trial toy`` uses the shipped toy model; ``--trial sd15-random`` builds Stable Diffusion 1.5 at full size
   with random weights (offline; timings only), 512² images, against a random 512² reference.
   Goal for SD1.5 5-step trials on a GPU: metrics <= 10% of the trial.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def throughput(fn, images, device, repeats=1) -> float:
    """images/s of fn(images) after one warm-up call on a small batch."""
    fn(images[:2])
    _sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        fn(images)
    _sync(device)
    return repeats * len(images) / (time.perf_counter() - t)


def bench_extractors(devices, n, cache):
    from objectives.clip_score import load_clip, load_open_clip
    from objectives.features import get_extractor

    print("\n## 1. feature extraction (images/s)")
    for dev in devices:
        inc = get_extractor("inception-v3-compat", device=dev, batch_size=32 if dev == "cpu" else 128, cache=cache)
        for side in (32, 512):
            x = torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8)
            print(f"  {dev:4s} Inception-V3 pool3  input {side:3d}² -> 299²   {throughput(inc, x, dev):8.1f} img/s"
                  f"   (N={n}, batch {inc.batch_size})")
        del inc
        try:
            import open_clip
            model = open_clip.create_model("ViT-B-32", pretrained=None)
            clip = load_open_clip("ViT-B-32", None, device=dev, model=model, model_id="ViT-B-32 (random weights)")
            x = torch.randint(0, 256, (n, 3, 512, 512), dtype=torch.uint8)
            print(f"  {dev:4s} CLIP ViT-B/32 image   input 512² -> 224²   "
                  f"{throughput(clip.image_features, x, dev):8.1f} img/s")
            prompts = ["a photo of a cat sitting on a red sofa next to a window"] * n
            print(f"  {dev:4s} CLIP ViT-B/32 text                         "
                  f"{throughput(clip.text_features, prompts, dev):8.1f} prompts/s")
        except Exception as e:  # pragma: no cover
            print(f"  {dev:4s} CLIP ViT-B/32: skipped ({e})")
        try:
            toy = load_clip("toy", device=dev)
            x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
            print(f"  {dev:4s} toy CLIP image        input  32²           {throughput(toy.image_features, x, dev):8.1f} img/s")
        except FileNotFoundError:
            print(f"  {dev:4s} toy CLIP: not shipped yet")


def bench_arithmetic(ns, n_ref=2000, prd_runs=10):
    from objectives.fid import fid_from_features, kid_from_features, kid_kernel
    from objectives.prd import prd_from_features

    print(f"\n## 2. metric arithmetic (s), reference N={n_ref}, 2048-d, CPU")
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(n_ref, 2048)).astype(np.float32)
    t = time.perf_counter()
    kyy = kid_kernel(ref)
    print(f"  once per Evaluator: KID reference kernel {time.perf_counter() - t:.2f} s")
    for n in ns:
        gen = rng.normal(size=(n, 2048)).astype(np.float32) + 0.1
        t = time.perf_counter(); fid_from_features(gen, ref); t_fid = time.perf_counter() - t
        t = time.perf_counter(); kid_from_features(gen, ref, subsets=100, kernel_22=kyy); t_kid = time.perf_counter() - t
        sub = ref[rng.permutation(n_ref)[:n]]
        t = time.perf_counter(); prd_from_features(gen, sub, num_runs=prd_runs); t_prd = time.perf_counter() - t
        print(f"  N={n:5d}  FID {t_fid:6.3f}   KID(100 subsets) {t_kid:6.3f}   PRD(20 clusters x {prd_runs} runs) {t_prd:6.2f}")


def _report_trial(label, n, gen_s, m):
    t = m["timings"]
    metric_s = t["total_s"]
    print(f"  {label}: N={n}  generate {gen_s:7.2f} s   metrics {metric_s:7.2f} s "
          f"(features {t.get('features_s', 0):.2f}, clip {t.get('clip_s', 0):.2f}, fid {t.get('fid_s', 0):.3f}, "
          f"kid {t.get('kid_s', 0):.3f}, prd {t.get('prd_s', 0):.2f})   metrics share {metric_s / (metric_s + gen_s):6.1%}")


def trial_toy(device, n, cache):
    from hpyn.presets import load_preset
    from hpyn.generate import generate
    from hpyn.models import load_model
    from objectives.evaluate import Evaluator

    print(f"\n## 3. toy trial on {device}: 5 steps, {n} images of 32²")
    model = load_model("toy", device=device)
    t = time.perf_counter()
    ev = Evaluator("toy", device=device, cache=cache)
    print(f"  evaluator setup (nets + reference features, cached after the first run): {time.perf_counter() - t:.1f} s")
    prompts = ev.prompts[:n]
    cfg = load_preset("sd15", 5)   # the paper's 5-step setting (the toy shares SD's betas)
    generate(model, cfg, prompts[:2], list(range(2)))   # warm-up
    t = time.perf_counter()
    images = generate(model, cfg, prompts, list(range(n)), batch_size=64)
    gen_s = time.perf_counter() - t
    m = ev.evaluate(images, prompts)
    _report_trial("toy", n, gen_s, m)
    print(f"  fid {m['fid']:.2f}  kid {m['kid_mean']:.4f}  clip {m['clip_score']:.2f}  "
          f"prd F8 {m['prd_f8']:.3f} F1/8 {m['prd_f1_8']:.3f}")


def sd15_random_model(device):
    """Stable Diffusion 1.5 at full size with random weights (UNet 859.5M, VAE, CLIP ViT-L/14 text), offline."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from hpyn.models import LoadedModel, noise_table, resolve
    from hpyn.toy.tokenizer import write_clip_tokenizer

    dtype = torch.float16 if torch.device(device).type == "cuda" else torch.float32
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2,
                        sample_size=512, scaling_factor=0.18215)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                                        projection_dim=768))
    tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(Path(tempfile.mkdtemp()) / "tok"))
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.to(device, dtype)
    spec = resolve("sd15")
    return LoadedModel("sd15-random", spec, pipe, noise_table(spec), torch.device(device), dtype)


def trial_sd15_random(device, n, cache, batch_size, resolution=512):
    import open_clip

    from hpyn.presets import load_preset
    from hpyn.generate import generate
    from objectives.clip_score import load_open_clip
    from objectives.evaluate import Evaluator
    from objectives.references import array_reference

    print(f"\n## 3. SD1.5-size trial on {device} (random weights: timings only): paper 5-step preset, "
          f"{n} images of {resolution}²")
    model = sd15_random_model(device)
    clip = load_open_clip("ViT-B-32", None, device=device, model=open_clip.create_model("ViT-B-32"),
                          model_id="ViT-B-32 (random weights)")
    ref = array_reference(torch.randint(0, 256, (max(n, 256), 3, resolution, resolution), dtype=torch.uint8),
                          name=f"random-{resolution}")
    ev = Evaluator(ref, clip=clip, device=device, cache=cache, batch_size=128 if device != "cpu" else 32)
    cfg = load_preset("sd15", 5)
    prompts = ["a photo of a cat sitting on a red sofa next to a window"] * n
    generate(model, cfg, prompts[:1], [0], resolution=resolution)   # warm-up
    _sync(device)
    t = time.perf_counter()
    images = generate(model, cfg, prompts, list(range(n)), batch_size=batch_size, resolution=resolution)
    _sync(device)
    gen_s = time.perf_counter() - t
    m = ev.evaluate(images, prompts)
    _report_trial("sd15-random", n, gen_s, m)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", default="auto", help="comma list of cpu,cuda; 'auto' = cpu (+ cuda if available)")
    ap.add_argument("--n", type=int, default=32, help="images per throughput measurement and per trial")
    ap.add_argument("--trial", default="toy", choices=["toy", "sd15-random", "none"])
    ap.add_argument("--trial-device", default=None, help="device of the trial (default: cuda if available)")
    ap.add_argument("--batch-size", type=int, default=16, help="generation batch size of the SD1.5 trial")
    ap.add_argument("--resolution", type=int, default=512, help="image size of the SD1.5 trial (smoke runs: 64)")
    ap.add_argument("--arith-n", default="64,256,1000", help="sample sizes for the arithmetic timings")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: extract,arith,trial")
    ap.add_argument("--cache", default=None, help="cache folder (default $HPYN_CACHE or ~/.cache/hpyn)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--quick", action="store_true", help="N=8, arithmetic at N=64 only, 2 PRD runs")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.quick:
        a.n, a.arith_n = 8, "64"
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if a.devices == "auto" else a.devices.split(",")
    skip = set(a.skip.split(",")) - {""}
    print(f"# metrics speed: torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"CUDA: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
    if "extract" not in skip:
        bench_extractors(devices, a.n, a.cache)
    if "arith" not in skip:
        bench_arithmetic([int(s) for s in a.arith_n.split(",")], prd_runs=2 if a.quick else 10)
    if "trial" not in skip and a.trial != "none":
        dev = a.trial_device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            if a.trial == "toy":
                trial_toy(dev, a.n, a.cache)
            else:
                trial_sd15_random(dev, a.n, a.cache, a.batch_size, a.resolution)
        except FileNotFoundError as e:
            print(f"\n## 3. trial skipped: {e}")


if __name__ == "__main__":
    main()
