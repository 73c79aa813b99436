"""prompts + seeds + SamplerConfig → images.  `python -m hpyn.generate --help`

Image i depends only on (seeds[i], prompts[i], config): its initial noise comes from its own generator,
so batch size and order never change which noise an image gets. Everything that depends on the model family
(noise levels, prompt encoding, the denoiser, FreeU sites, decoding) is asked of the model (`hpyn.models`).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
from pathlib import Path

import torch
from tqdm.auto import tqdm

from hpyn.config import SamplerConfig
from hpyn.solvers import get_solver

__all__ = ["check_device", "config_from_arg", "generate", "initial_noise", "main", "model_spec_and_table",
           "parse_seeds"]


def initial_noise(seeds: list[int], shape: tuple[int, ...]) -> torch.Tensor:
    """z_i ~ N(0, I) of `shape` (per sample) from torch.Generator(cpu).manual_seed(seed_i), stacked."""
    out = torch.empty((len(seeds), *shape), dtype=torch.float32)
    for i, seed in enumerate(seeds):
        out[i] = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(seed)))
    return out


def generate(model, config: SamplerConfig, prompts: list[str], seeds: list[int], *, batch_size: int = 16,
             progress: bool = False, resolution: int | None = None) -> torch.Tensor:
    """Sample one image per (prompt, seed): uint8 [N, 3, H, W] on the CPU."""
    if len(prompts) != len(seeds) or not seeds:
        raise ValueError(f"need one seed per prompt, got {len(prompts)} prompts and {len(seeds)} seeds")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    sigmas = config.sigmas(model.table)
    solver = get_solver(config.solver)
    shape = model.latent_shape(1, resolution)[1:]
    freeu = model.freeu(config.freeu_mapping) if config.freeu else None
    step_hook = (lambda i: freeu.set(config.freeu_at(i))) if freeu else None
    images = []
    try:
        for lo in tqdm(range(0, len(prompts), batch_size), disable=not progress, desc="batches"):
            batch = list(prompts[lo:lo + batch_size])
            denoiser = model.make_denoiser(batch, guidance=config.guidance, resolution=resolution,
                                           guidance_interval=config.guidance_interval)
            x = initial_noise(seeds[lo:lo + batch_size], shape).to(model.device) * float(sigmas[0])
            x = solver(denoiser, x, sigmas, step_hook=step_hook)
            if not torch.isfinite(x).all():
                raise FloatingPointError(f"non-finite latents for seeds {seeds[lo:lo + batch_size]}")
            images.append(model.decode(x))
    finally:
        if freeu:
            freeu.remove()
    return torch.cat(images)


MAX_IMAGES = 100_000    # per run: FID-50k is the largest sample set in common use; twice that is a typo
MAX_SEED = 2**64 - 1    # torch.Generator.manual_seed accepts seeds up to 2^64 - 1
MAX_GUIDANCE = 100.0    # the search space's bound on w (search.dimensions); beyond it the latents overflow


def parse_seeds(text: str, limit: int = MAX_IMAGES) -> list[int]:
    """'0-7' → 0..7, '1,5,9' → [1, 5, 9], '3' → [3]; combinations like '0-3,10' work too; at most `limit` seeds,
    counted before any list is built (so '0-100000000' is refused at once)."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            a = int(lo)
            b = int(hi) if hi else a
        except ValueError:
            raise ValueError(f"--seeds {text!r}: {part!r} is not a seed or a range of seeds (whole numbers ≥ 0); "
                             "use e.g. '0-7' or '1,5,9'") from None
        if a < 0 or b < a or b > MAX_SEED:
            raise ValueError(f"--seeds {text!r}: {part!r} is not an ascending range of seeds from 0 to 2^64 - 1")
        if len(seeds) + b - a + 1 > limit:
            raise ValueError(f"--seeds {text!r} asks for {len(seeds) + b - a + 1} images; at most {limit} per run")
        seeds.extend(range(a, b + 1))
    return seeds


def check_device(device: str | None) -> None:
    """A torch device this machine has: `--device bogus` or `--device cuda` without a GPU is a message before any
    model loads, not a traceback after."""
    if device is None:
        return
    try:
        d = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {device!r} is not a torch device; use cpu, cuda, cuda:N or mps") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device!r}: no CUDA GPU is visible here (torch.cuda.is_available() is "
                             "False); use --device cpu")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif d.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"--device {device!r}: Apple MPS is not available here; use --device cpu")
    elif d.type != "cpu":
        raise ValueError(f"--device {device!r}: hpyn samples on cpu, cuda or mps")


def check_steps(steps: int | None) -> None:
    from hpyn.config import MAX_STEPS
    if steps is not None and not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"--steps {steps}: give a number of solver steps from 1 to {MAX_STEPS}")


def _hub_offline() -> bool:
    from huggingface_hub import constants
    return bool(constants.HF_HUB_OFFLINE)


def model_spec_and_table(name: str, *, weights: bool):
    """The ModelSpec and noise table of `--model name`, read from configs only (no weights load). With
    `weights=True` (generate), a hub model must also be in the local cache when the hub is offline."""
    from hpyn.models import noise_table, resolve
    spec = resolve(name)   # unknown names, missing folders: errors naming them
    hub = [] if spec.is_local else [(spec.source, "model_index.json")]
    hub += [(spec.vae, "config.json")] if weights and spec.vae and not Path(spec.vae).is_dir() else []
    offline = bool(hub) and _hub_offline()
    if offline and (weights or spec.scheduler is None):
        from huggingface_hub import try_to_load_from_cache
        for repo, first_file in hub:
            missing = not isinstance(try_to_load_from_cache(repo, first_file), str)  # None or a "known absent" mark
            if missing:
                raise ValueError(f"--model {name!r}: {repo} is not in the local Hugging Face cache and the hub is "
                                 "offline (HF_HUB_OFFLINE=1); download it once online, or give a local folder")
    try:
        table = noise_table(spec)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"--model {name!r}: {e}") from None
    except Exception as e:  # noqa: BLE001 - the hub's errors (not found, gated, no network) have no common base
        first = next((ln for ln in str(e).splitlines() if ln.strip()), "")
        where = "the hub is offline (HF_HUB_OFFLINE=1)" if _hub_offline() else f"{type(e).__name__}: {first}"
        raise ValueError(f"--model {name!r}: cannot read its pipeline configs ({where})") from None
    return spec, table


def config_from_arg(arg: str, spec, steps: int | None):
    """(SamplerConfig, where it came from) for `--config arg`: a JSON file, or a preset name with --steps."""
    from hpyn.presets import PRESETS, paper_setting, preset
    path = Path(arg).expanduser()
    if path.exists() or arg.endswith(".json") or "/" in arg:
        try:
            config = SamplerConfig.load(path)
        except FileNotFoundError:
            raise ValueError(f"--config {arg!r}: no such file, and not a preset") from None
        except OSError as e:
            raise ValueError(f"--config {arg!r}: cannot read it ({e.strerror or e})") from None
        if steps is not None and steps != config.steps:
            raise ValueError(f"--steps {steps} conflicts with --config {arg!r}, whose config has steps={config.steps} "
                             f"(its ε and FreeU windows were chosen for that count): drop --steps, or use a preset "
                             f"(--config paper --steps {steps})")
        return config, f"file {arg}"
    if arg not in PRESETS:
        raise ValueError(f"--config {arg!r}: no such file, and not a preset ({', '.join(PRESETS)})")
    if steps is None:
        raise ValueError(f"--config {arg!r} is a preset: give --steps too")
    if arg == "paper":
        return paper_setting(spec.family, steps)
    return preset(arg, spec.family, steps), f"preset {arg}"


def read_prompts(path: str) -> list[str]:
    """The non-empty lines of a UTF-8 text file."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"--prompts {path!r}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ValueError(f"--prompts {path!r} is not UTF-8 text") from None
    prompts = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not prompts:
        raise ValueError(f"--prompts {path!r} has no prompts (one per line)")
    return prompts


def check_out(out: str) -> Path:
    """--out is a folder, or can be made one: not a file, under no file, in a writable place."""
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {out!r} is a file; give a folder (created if missing)")
    base = path
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        raise ValueError(f"--out {out!r}: {base} is a file, so the folder cannot be made there")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out!r}: {base} is not writable")
    return path


def _check_guidance(value: float, where: str) -> None:
    if not math.isfinite(value) or not 0 <= value <= MAX_GUIDANCE:
        raise ValueError(f"{where} {value:g}: the guidance scale must be a finite number from 0 to {MAX_GUIDANCE:g}")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    from hpyn.presets import PRESETS
    p = argparse.ArgumentParser(
        prog="python -m hpyn.generate", description="Sample images with a sampler config.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m hpyn.generate --model toy --config paper --steps 5 --prompt 'a photo of a sneaker' "
               "--seeds 0-7 --out out/\n"
               "  python -m hpyn.generate --model sd15 --config best.json --prompts prompts.txt --seeds 0-99 "
               "--out out/")
    p.add_argument("--model", default="toy", help="registry name, diffusers folder or hub id (default: toy)")
    p.add_argument("--config", required=True,
                   help=f"config/export JSON file, or a preset: {' | '.join(PRESETS)} (hpyn.presets.PRESET_INFO)")
    p.add_argument("--steps", type=int, help="steps for a preset (a config file has its own)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    g.add_argument("--prompts", help="text file, one prompt per line")
    p.add_argument("--seeds", default="0", help=f"e.g. 0-7 or 1,5,9, at most {MAX_IMAGES}; image i gets seed i and "
                                                "prompt i, prompts reused in turn if fewer (default 0)")
    p.add_argument("--out", required=True, help="output folder for PNGs (created if missing)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--guidance", type=float, help=f"override the config's guidance scale (0 to {MAX_GUIDANCE:g})")
    p.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: cuda if available)")
    args = p.parse_args(argv)
    try:   # every input is checked before the model loads or anything is written
        check_steps(args.steps)
        if not 1 <= args.batch_size <= MAX_IMAGES:
            raise ValueError(f"--batch-size {args.batch_size}: give a batch size from 1 to {MAX_IMAGES}")
        if args.guidance is not None:
            _check_guidance(args.guidance, "--guidance")
        check_device(args.device)
        seeds = parse_seeds(args.seeds)
        if args.prompts:
            prompts = read_prompts(args.prompts)
        else:
            prompts = args.prompt
            if empty := [pr for pr in prompts if not pr.strip()]:
                raise ValueError(f"--prompt {empty[0]!r}: give a non-empty prompt")
        out = check_out(args.out)
        spec, table = model_spec_and_table(args.model, weights=True)
        config, source = config_from_arg(args.config, spec, args.steps)
        if args.guidance is not None:
            config = config.replace(guidance=args.guidance)
        else:
            _check_guidance(config.guidance, f"{source}: guidance")
        try:
            config.sigmas(table)   # ε / σ_min against this model's noise levels, and the grid itself
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if len(prompts) < len(seeds):
        _warn(f"{len(prompts)} prompt(s) for {len(seeds)} seeds: prompts are reused in turn (image i gets prompt "
              f"i mod {len(prompts)})")
    elif len(prompts) > len(seeds):
        _warn(f"{len(prompts)} prompts but {len(seeds)} seed(s) (--seeds {args.seeds}): only the first "
              f"{len(seeds)} prompt(s) are used")
    if (out / "config.json").exists():
        _warn(f"--out {args.out!r} already holds a run (config.json): its files are overwritten")
    prompts = [prompts[i % len(prompts)] for i in range(len(seeds))]
    from hpyn.models import load_model
    try:
        model = load_model(args.model, device=args.device)
    except (OSError, ValueError, RuntimeError) as e:   # weights missing or corrupt, a folder that is not a pipeline
        first = next((ln for ln in str(e).splitlines() if ln.strip()), "")
        print(f"error: --model {args.model!r}: cannot load it ({type(e).__name__}: {first})", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / "config.json")
    (out / "prompts.txt").write_text("".join(f"{s:06d}\t{pr}\n" for s, pr in zip(seeds, prompts)))
    stop = _Stop()
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _write_images(model, config, prompts, seeds, out, args.batch_size, stop)
    except KeyboardInterrupt:   # Ctrl-C or SIGTERM: the finished images stay, each PNG whole
        print(f"interrupted: wrote {stop.done} of {len(seeds)} images to {out}/", file=sys.stderr)
        return 130
    except FloatingPointError as e:
        print(f"error: {e} (wrote {stop.done} of {len(seeds)} images to {out}/)", file=sys.stderr)
        return 1
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    print(f"wrote {len(seeds)} images to {out}/")
    return 0


class _Stop:
    """SIGINT/SIGTERM handler: KeyboardInterrupt at once, or, while an image is being written, right after it."""

    def __init__(self):
        self.done, self.writing, self.pending = 0, False, False

    def __call__(self, signum, frame):
        if self.writing:
            self.pending = True
        else:
            raise KeyboardInterrupt


def _write_images(model, config, prompts, seeds, out: Path, batch_size: int, stop: _Stop) -> None:
    """Sample and save batch by batch (a long run keeps what it finished); each PNG is written to a temporary name
    and renamed, with a stop signal held back meanwhile, so an interrupted run never leaves a truncated image."""
    from PIL import Image
    for lo in tqdm(range(0, len(seeds), batch_size), desc="batches"):
        hi = lo + batch_size
        images = generate(model, config, prompts[lo:hi], seeds[lo:hi], batch_size=batch_size)
        for img, seed in zip(images, seeds[lo:hi]):
            path = out / f"{seed:06d}.png"
            tmp = path.with_name(f".{path.name}.tmp")
            stop.writing = True
            try:
                Image.fromarray(img.permute(1, 2, 0).numpy()).save(tmp, format="PNG")
                os.replace(tmp, path)
                stop.done += 1
            finally:
                stop.writing = False
                tmp.unlink(missing_ok=True)
            if stop.pending:
                raise KeyboardInterrupt

if __name__ == "__main__":
    raise SystemExit(main())
