"""Sampler speed: hpyn vs diffusers' own pipeline on the same UNet, same number of U-Net calls.

    python benchmarks/sampler_speed.py                       # the embedded toy model, CPU
    python benchmarks/sampler_speed.py --model sd15-random --resolution 512 --device cuda   # full SD1.5 UNet

`sd15-random` is Stable Diffusion 1.5's architecture (UNet 859,520,964 parameters, CLIP ViT-L/14 text encoder,
SD VAE) built from configs with random weights: speed does not depend on the weights, and nothing is downloaded.
Prints seconds per image for: diffusers StableDiffusionPipeline + DPMSolverMultistepScheduler (Karras σ,
DPM-Solver++2M), hpyn with the same classic setting, hpyn with the paper's 5-step setting (FreeU on), and the
ratios hpyn / diffusers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hpyn.presets import classic_setting, load_preset  # noqa: E402
from hpyn.generate import generate  # noqa: E402
from hpyn.models import load_model  # noqa: E402


def build_sd15_random(folder: Path, resolution: int) -> Path:
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from hpyn.toy.tokenizer import write_clip_tokenizer

    tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(folder / "tok"))
    unet = UNet2DConditionModel(sample_size=resolution // 8, cross_attention_dim=768, attention_head_dim=8)
    print(f"SD1.5 UNet parameters: {sum(p.numel() for p in unet.parameters()):,}")
    text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                                        projection_dim=768))
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                        sample_size=resolution)
    sched = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                          skip_prk_steps=True)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder / "pipeline")
    return folder / "pipeline"


def timed(fn, repeats: int, sync) -> float:
    fn()  # warm-up
    sync()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="toy", help="toy | sd15-random | any hpyn model name or folder")
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--batch", type=int, default=None, help="images per batch (default 64 toy, 4 otherwise)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    name = args.model
    if name == "sd15-random":
        name = str(build_sd15_random(Path(tempfile.mkdtemp()), args.resolution or 512))
    model = load_model(name, device=device)
    res = args.resolution or model.resolution
    batch = args.batch or (64 if args.model == "toy" else 4)
    prompts = [f"a photo of thing number {i}" for i in range(batch)]
    seeds = list(range(batch))
    classic = classic_setting(args.steps, guidance=7.5)
    paper = load_preset("sd15", 5).replace(guidance=7.5) if args.steps == 5 else None

    from diffusers import DPMSolverMultistepScheduler
    pipe = model.pipe
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True,
                                                             algorithm_type="dpmsolver++", solver_order=2)

    def run_diffusers():
        gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        pipe(prompts, num_inference_steps=args.steps, guidance_scale=7.5, generator=gens, height=res, width=res,
             output_type="pt")

    rows = [("diffusers DPM++2M Karras", timed(run_diffusers, args.repeats, sync))]
    rows.append(("hpyn DPM++2M Karras (same σ's)", timed(
        lambda: generate(model, classic, prompts, seeds, batch_size=batch, resolution=res), args.repeats, sync)))
    if paper is not None:
        rows.append(("hpyn paper 5-step (FreeU on)", timed(
            lambda: generate(model, paper, prompts, seeds, batch_size=batch, resolution=res), args.repeats, sync)))
        rows.append(("hpyn paper 5-step, FreeU off", timed(
            lambda: generate(model, paper.replace(freeu=()), prompts, seeds, batch_size=batch, resolution=res),
            args.repeats, sync)))
    base = rows[0][1]
    print(f"\nmodel={args.model} device={device} dtype={model.dtype} resolution={res} batch={batch} "
          f"steps={args.steps} torch_threads={torch.get_num_threads()}")
    print(f"{'sampler':34s} {'s/batch':>9s} {'ms/image':>9s} {'vs diffusers':>13s}")
    for label, sec in rows:
        print(f"{label:34s} {sec:9.3f} {1000 * sec / batch:9.1f} {sec / base:12.2f}x")


if __name__ == "__main__":
    main()
