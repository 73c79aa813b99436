"""Print the σ and t arrays of a preset or config file, without downloading anything.

    python -m hpyn.schedule --model sd15 --steps 5 --preset paper
    python -m hpyn.schedule --model sdxl --steps 8 --preset paper --json
    python -m hpyn.schedule --model sd15 --config best.json --format comfyui
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main"]

FORMATS = ("text", "json", "comfyui")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hpyn.schedule", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    from hpyn.presets import PRESETS
    p.add_argument("--model", default="sd15", help="registry name, diffusers folder or hub id (default sd15)")
    p.add_argument("--steps", type=int, help="number of steps (for --preset; a config file has its own)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--preset", choices=PRESETS, default=None, help="a named setting (default: paper)")
    g.add_argument("--config", help="a SamplerConfig or exported-study JSON file")
    f = p.add_mutually_exclusive_group()
    f.add_argument("--format", choices=FORMATS, default="text",
                   help="text (default), json, or comfyui (ManualSigmas string and sampler name)")
    f.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    args = p.parse_args(argv)
    try:
        from hpyn.generate import check_steps, config_from_arg, model_spec_and_table
        from hpyn.schedules import grid_info
        check_steps(args.steps)
        spec, table = model_spec_and_table(args.model, weights=False)
        if args.config is None and args.steps is None:
            raise ValueError("give --steps with a preset (or --config FILE)")
        config, note = config_from_arg(args.config or args.preset or "paper", spec, args.steps)
        try:
            info = grid_info(config, table)
        except ValueError as e:
            raise ValueError(f"{note}: {e}") from None
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps({"model": spec.name, "source": note, **info}, indent=2))
        return 0
    if args.format == "comfyui":
        from hpyn.comfyui import comfyui_recipe, format_comfyui
        print(f"model {spec.name} ({note})")
        print(format_comfyui(comfyui_recipe(config, info["sigmas"])))
        return 0
    print(f"model {spec.name}  σ_min={table.sigma_min:.6g}  σ_max={table.sigma_max:.6g}  ({note})")
    c = config
    print(f"steps={c.steps} spacing={c.spacing} rho={c.rho} final={c.final} epsilon={c.epsilon} "
          f"sigma_min={c.sigma_min} solver={c.solver} guidance={c.guidance} freeu={[w.__dict__ for w in c.freeu]}"
          + ("" if c.guidance_interval is None else f" guidance_interval={list(c.guidance_interval)}")
          + ("" if c.offsets is None else " refined: log-σ offsets " + " ".join(f"{o:+.3g}" for o in c.offsets)))
    print("sigma: " + " ".join(f"{s:.5g}" for s in info["sigmas"]))
    print("t:     " + " ".join(f"{t:.2f}" for t in info["timesteps"]) + (" (then σ=0)" if c.final == "zero" else ""))
    print("h:     " + " ".join(f"{h:.3f}" for h in info["h"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
