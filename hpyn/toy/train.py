"""Train every shipped weight of the toy model from Fashion-MNIST, deterministically, on a CPU.

    python -m hpyn.toy.train --out hpyn/toy/weights          # the shipped run (~35 min on a shared 2-core CPU)
    python -m hpyn.toy.train --out /tmp/toy --quick          # a minutes-long smoke run

Stages (each seeded on its own, so one stage's length does not change another's weights):
  1. tokenizer   real CLIP BPE (49,408 tokens) rebuilt from open_clip's merges file
  2. classifier  small CNN, used to check that generated images show the prompted class
  3. vae         AutoencoderKL 32x32x3 -> 8x8x4, KL-regularised; scaling_factor = 1/std(latents) as in SD
  4. clip        small transformers CLIPModel trained contrastively on (image, caption); its text tower,
                 frozen, is the pipeline's text encoder (as SD uses a frozen CLIP text encoder)
  5. unet        UNet2DConditionModel with cross-attention, eps-prediction, SD scaled_linear betas,
                 10% caption dropout to "" for classifier-free guidance, EMA weights shipped
  6. reference   2,000 held-out test images (200 per class) as uint8, for FID/KID/PRD
  7. report      VAE latent noise tolerance and training numbers -> train_report.json
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import data, nets
from .tokenizer import write_clip_tokenizer

NOISE_LEVELS = (0.0, 0.03, 0.06, 0.13, 0.2, 0.5, 1.0)


@dataclass(frozen=True)
class Budget:
    classifier_steps: int = 200
    vae_steps: int = 250
    clip_steps: int = 150
    unet_steps: int = 700
    batch: int = 128
    unet_batch: int = 256
    vae_batch: int = 128
    clip_batch: int = 128
    n_train: int = 60000
    n_test: int = 10000
    n_reference: int = 2000
    unet_save_every: int = 100
    unet_lr: float = 8e-4
    unet_warmup: int = 50


QUICK = Budget(classifier_steps=10, vae_steps=10, clip_steps=10, unet_steps=10, batch=16, unet_batch=16, vae_batch=16,
               clip_batch=32, n_train=512, n_test=200, n_reference=100, unet_save_every=5)

_T0 = time.time()


def log(msg: str) -> None:
    print(f"[{time.time() - _T0:7.1f}s] {msg}", flush=True)


def to_unit(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (the VAE's and classifier's input range)."""
    return x_uint8.float() / 127.5 - 1.0


def batches(n: int, batch: int, steps: int, seed: int):
    """Index batches over epochs of seeded permutations."""
    g = torch.Generator().manual_seed(seed)
    perm, pos = torch.randperm(n, generator=g), 0
    for _ in range(steps):
        if pos + batch > n:
            perm, pos = torch.randperm(n, generator=g), 0
        yield perm[pos:pos + batch]
        pos += batch


def cosine_lr(step: int, total: int, base: float, warmup: int = 100, floor: float = 0.1) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


def set_lr(opt, lr):
    for g in opt.param_groups:
        g["lr"] = lr


# ----------------------------------------------------------------------------------------------- stages
def train_classifier(x, y, budget: Budget, seed: int):
    torch.manual_seed(seed)
    model = nets.Classifier()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    model.train()
    for i, idx in enumerate(batches(len(x), budget.batch, budget.classifier_steps, seed)):
        set_lr(opt, cosine_lr(i, budget.classifier_steps, 2e-3, warmup=50, floor=0.02))
        loss = F.cross_entropy(model(to_unit(x[idx])), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i % 100 == 0:
            log(f"classifier step {i} loss {loss.item():.3f}")
    return model.eval()


@torch.no_grad()
def accuracy(model, x_uint8, y, batch=500) -> float:
    correct = 0
    for i in range(0, len(x_uint8), batch):
        correct += (model(to_unit(x_uint8[i:i + batch])).argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x_uint8)


def train_vae(x, budget: Budget, seed: int, kl_weight: float = 1e-3):
    torch.manual_seed(seed)
    vae = nets.vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed + 1)
    vae.train()
    for i, idx in enumerate(batches(len(x), budget.vae_batch, budget.vae_steps, seed)):
        set_lr(opt, cosine_lr(i, budget.vae_steps, 2e-3, warmup=50))
        xb = to_unit(x[idx])
        post = vae.encode(xb).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
        rec = vae.decode(z).sample
        rec_loss = (rec - xb).abs().mean() + (rec - xb).pow(2).mean()
        kl = 0.5 * (post.mean.pow(2) + post.var - 1.0 - post.logvar).mean()
        loss = rec_loss + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if i % 25 == 0:
            log(f"vae step {i} rec {rec_loss.item():.4f} kl {kl.item():.3f}")
    vae.eval()
    return vae


@torch.no_grad()
def encode_all(vae, x, batch=500):
    means, stds = [], []
    for i in range(0, len(x), batch):
        post = vae.encode(to_unit(x[i:i + batch])).latent_dist
        means.append(post.mean)
        stds.append(post.std)
    return torch.cat(means), torch.cat(stds)


def tokenize(tokenizer, captions, length=nets.MAX_LENGTH):
    return tokenizer(captions, padding="max_length", max_length=length, truncation=True,
                     return_tensors="pt").input_ids


def train_clip(x, y, tokenizer, budget: Budget, seed: int):
    from transformers import CLIPModel
    torch.manual_seed(seed)
    model = CLIPModel(nets.clip_config())
    caps = data.all_captions()
    n_t = len(data.TEMPLATES)
    # Causal text attention: positions before the first <|endoftext|> (which CLIP pools) do not see the
    # padding, so training on 16 tokens gives the same pooled features as SD's 77-token input.
    ids = tokenize(tokenizer, caps, 16)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    g = torch.Generator().manual_seed(seed + 1)
    model.train()
    for i, idx in enumerate(batches(len(x), budget.clip_batch, budget.clip_steps, seed)):
        set_lr(opt, cosine_lr(i, budget.clip_steps, 1e-3, warmup=50))
        labels = y[idx]
        tmpl = torch.randint(0, n_t, (len(idx),), generator=g)
        out = model(input_ids=ids[tmpl * 10 + labels], pixel_values=to_unit(x[idx]))
        # Many captions in a batch name the same class: soft targets over all same-class pairs.
        same = (labels[:, None] == labels[None, :]).float()
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (torch.sum(-target * F.log_softmax(out.logits_per_image, 1), 1).mean()
                      + torch.sum(-target * F.log_softmax(out.logits_per_text, 1), 1).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if i % 50 == 0:
            log(f"clip step {i} loss {loss.item():.3f} scale {model.logit_scale.exp().item():.1f}")
    model.eval()
    return model


@torch.no_grad()
def clip_zero_shot(model, tokenizer, x, y, batch=500) -> float:
    ids = tokenize(tokenizer, [data.caption(c, 0) for c in range(10)])
    t = F.normalize(_features(model.get_text_features(input_ids=ids)), dim=-1)
    correct = 0
    for i in range(0, len(x), batch):
        v = F.normalize(_features(model.get_image_features(pixel_values=to_unit(x[i:i + batch]))), dim=-1)
        correct += ((v @ t.T).argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x)


def _features(out):
    return out if torch.is_tensor(out) else out.pooler_output


def train_unet(latents_mean, latents_std, y, text_emb, sf, budget: Budget, seed: int,
               cfg_drop: float = 0.1, min_snr: float = 5.0, ema_decay: float = 0.999, on_checkpoint=None,
               stop_after: int | None = None):
    """eps-prediction on SD's scaled_linear betas; text_emb: [n_templates * 10 + 1, 77, H], last = ""."""
    import copy
    torch.manual_seed(seed)
    unet = nets.unet()
    ema = copy.deepcopy(unet).requires_grad_(False)
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    abar = torch.cumprod(1 - betas, 0)
    snr = (abar / (1 - abar)).float()
    weight = torch.clamp(snr, max=min_snr) / snr             # min-SNR-gamma weighting for eps-prediction
    sa, sb = abar.sqrt().float(), (1 - abar).sqrt().float()
    n_t = len(data.TEMPLATES)
    uncond = len(text_emb) - 1
    opt = torch.optim.AdamW(unet.parameters(), lr=budget.unet_lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed + 1)
    unet.train()
    t_start = time.time()
    for i, idx in enumerate(batches(len(y), budget.unet_batch, budget.unet_steps, seed)):
        if stop_after is not None and i >= stop_after:
            log(f"unet: stopping after {i} of {budget.unet_steps} scheduled steps (--stop-after)")
            break
        set_lr(opt, cosine_lr(i, budget.unet_steps, budget.unet_lr, warmup=budget.unet_warmup))
        b = len(idx)
        z0 = (latents_mean[idx] + latents_std[idx] * torch.randn(latents_mean[idx].shape, generator=g)) * sf
        cap = torch.randint(0, n_t, (b,), generator=g) * 10 + y[idx]
        cap = torch.where(torch.rand(b, generator=g) < cfg_drop, torch.full_like(cap, uncond), cap)
        t = torch.randint(0, 1000, (b,), generator=g)
        eps = torch.randn(z0.shape, generator=g)
        zt = sa[t].view(-1, 1, 1, 1) * z0 + sb[t].view(-1, 1, 1, 1) * eps
        pred = unet(zt, t, encoder_hidden_states=text_emb[cap]).sample
        loss = ((pred - eps).pow(2).mean((1, 2, 3)) * weight[t]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        d = min(ema_decay, (1 + i) / (10 + i))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - d)
        if i % 10 == 0:
            rate = (time.time() - t_start) / (i + 1)
            log(f"unet step {i}/{budget.unet_steps} loss {loss.item():.4f} ({rate:.2f} s/step)")
        if on_checkpoint is not None and (i + 1) % budget.unet_save_every == 0 and i + 1 < budget.unet_steps:
            on_checkpoint(ema, i + 1)
    ema.eval()
    return ema


@torch.no_grad()
def noise_tolerance(vae, sf, classifier, x, y, seed: int, levels=NOISE_LEVELS):
    """Decode (z + sigma * n) for scaled latents z: PSNR vs the clean decode and vs the image, classifier accuracy."""
    g = torch.Generator().manual_seed(seed)
    xb = to_unit(x)
    z = vae.encode(xb).latent_dist.mean * sf
    clean = vae.decode(z / sf).sample.clamp(-1, 1)
    rows = []
    for s in levels:
        noisy = vae.decode((z + s * torch.randn(z.shape, generator=g)) / sf).sample.clamp(-1, 1)
        mse_clean = (noisy - clean).pow(2).mean((1, 2, 3))
        mse_img = (noisy - xb).pow(2).mean((1, 2, 3))
        psnr = lambda m: (10 * torch.log10(4.0 / m.clamp_min(1e-10))).mean().item()  # range [-1, 1] -> peak 2
        acc = (classifier(noisy).argmax(1) == y).float().mean().item()
        rows.append(dict(sigma=s, psnr_vs_clean_decode=round(psnr(mse_clean), 2) if s > 0 else None,
                         psnr_vs_image=round(psnr(mse_img), 2), classifier_accuracy=round(acc, 4)))
        log(f"latent noise sigma={s}: {rows[-1]}")
    return rows


def round_fp16(model):
    """Round weights to fp16 precision in place (the shipped precision), so that everything measured or
    derived from a model (accuracies, latents, scaling factor, text embeddings) matches the shipped file."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())
    return model


# ----------------------------------------------------------------------------------------------- saving
def _fp16_transformers(model, path: Path):
    """Save fp16 weights (half the bytes) but declare float32 so that loading upcasts by default."""
    model.to(torch.float16).save_pretrained(path)
    model.to(torch.float32)
    cfg_path = path / "config.json"
    cfg = json.loads(cfg_path.read_text())
    for key in ("dtype", "torch_dtype"):
        if key in cfg:
            cfg[key] = "float32"
    for sub in ("text_config", "vision_config"):
        if isinstance(cfg.get(sub), dict):
            for key in ("dtype", "torch_dtype"):
                if key in cfg[sub]:
                    cfg[sub][key] = "float32"
    cfg_path.write_text(json.dumps(cfg, indent=2))


def save_pipeline(out: Path, vae, text_encoder, tokenizer_dir: Path, unet):
    """Write a diffusers StableDiffusionPipeline folder (what sd15 is) with fp16 weights, atomically."""
    import copy
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer
    pipe_dir, tmp = out / "pipeline", out / "pipeline.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    scheduler = PNDMScheduler(skip_prk_steps=True, **nets.BETAS)   # SD 1.5 ships this scheduler config
    pipe = StableDiffusionPipeline(vae=copy.deepcopy(vae).half(), text_encoder=text_encoder,
                                   tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir),
                                   unet=copy.deepcopy(unet).half(), scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(tmp)
    # ship the classic vocab.json + merges.txt (1.5 MB, loadable by slow and fast CLIPTokenizer alike)
    # instead of the 3.6 MB tokenizer.json
    shutil.rmtree(tmp / "tokenizer")
    shutil.copytree(tokenizer_dir, tmp / "tokenizer")
    _fp16_transformers(copy.deepcopy(text_encoder), tmp / "text_encoder")
    if pipe_dir.exists():
        shutil.rmtree(pipe_dir)
    tmp.rename(pipe_dir)
    return pipe_dir


def text_encoder_from_clip(clip):
    from transformers import CLIPTextModel
    te = CLIPTextModel(clip.config.text_config)
    missing, unexpected = te.load_state_dict(_text_state(clip), strict=False)
    assert not missing, missing
    return te.eval()


def _text_state(clip):
    tm = clip.text_model
    return {k: v for k, v in tm.state_dict().items()}


# ----------------------------------------------------------------------------------------------- main
def train(out: str | Path, quick: bool = False, seed: int = 0, threads: int = 1, data_root=None,
          stop_after: int | None = None, resume: bool = False) -> dict:
    from transformers import CLIPImageProcessor, CLIPTokenizer
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    budget = QUICK if quick else Budget()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    times = {}

    def stage(name):
        times[name] = time.time()

    def done(name):
        times[name] = round(time.time() - times[name], 1)

    x_np, y_np = data.load_split("train", data_root)
    xt_np, yt_np = data.load_split("test", data_root)
    x, y = torch.from_numpy(x_np[:budget.n_train]), torch.from_numpy(y_np[:budget.n_train])
    xt, yt = torch.from_numpy(xt_np), torch.from_numpy(yt_np)
    xt, yt = xt[:budget.n_test], yt[:budget.n_test]
    log(f"data: train {tuple(x.shape)} test {tuple(xt.shape)}; budget {budget}")

    tok_dir = out / "tokenizer_build"
    write_clip_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)

    from safetensors.torch import load_file, save_file
    stage("classifier")
    cls_path = out / "classifier.safetensors"
    if resume and cls_path.exists():
        classifier = nets.Classifier()
        classifier.load_state_dict({k: v.float() if v.is_floating_point() else v
                                    for k, v in load_file(str(cls_path)).items()})
        classifier.eval()
        log(f"classifier: resumed from {cls_path}")
    else:
        classifier = train_classifier(x, y, budget, seed + 100)
        save_file({k: v.to(torch.float16) if v.is_floating_point() else v
                   for k, v in classifier.state_dict().items()}, cls_path)
    round_fp16(classifier)
    cls_acc = accuracy(classifier, xt, yt)
    log(f"classifier test accuracy (fp16 weights) {cls_acc:.4f}")
    done("classifier")

    stage("vae")
    vae_path = out / "stage_vae"
    if resume and (vae_path / "config.json").exists():
        from diffusers import AutoencoderKL
        vae = AutoencoderKL.from_pretrained(vae_path, torch_dtype=torch.float32).eval()
        log(f"vae: resumed from {vae_path}")
    else:
        vae = train_vae(x, budget, seed + 200)
        copy_vae = nets.vae()
        copy_vae.load_state_dict(vae.state_dict())
        copy_vae.half().save_pretrained(vae_path)      # stage output, removed when the run completes
    round_fp16(vae)
    mean, std = encode_all(vae, x)
    g = torch.Generator().manual_seed(seed + 201)
    samples = mean + std * torch.randn(mean.shape, generator=g)
    sf = float(1.0 / samples.std())
    vae.register_to_config(scaling_factor=sf)
    with torch.no_grad():
        rec = vae.decode(vae.encode(to_unit(xt[:1000])).latent_dist.mean).sample.clamp(-1, 1)
        vae_psnr = (10 * torch.log10(4.0 / (rec - to_unit(xt[:1000])).pow(2).mean((1, 2, 3)))).mean().item()
        vae_rec_acc = (classifier(rec).argmax(1) == yt[:1000]).float().mean().item()
    post_std_scaled = float((std * sf).mean())
    log(f"vae: scaling_factor {sf:.4f}, test PSNR {vae_psnr:.2f} dB, classifier acc on recon {vae_rec_acc:.4f}, "
        f"mean posterior std (scaled) {post_std_scaled:.4f}")
    done("vae")

    stage("clip")
    clip_dir = out / "clip"
    if resume and (clip_dir / "config.json").exists():
        from transformers import CLIPModel
        clip = CLIPModel.from_pretrained(clip_dir, torch_dtype=torch.float32).eval()
        log(f"clip: resumed from {clip_dir}")
    else:
        clip = train_clip(x, y, tokenizer, budget, seed + 300)
        if clip_dir.exists():
            shutil.rmtree(clip_dir)
        _fp16_transformers(clip, clip_dir)
        CLIPImageProcessor(do_resize=True, size={"shortest_edge": 32}, do_center_crop=True,
                           crop_size={"height": 32, "width": 32}, do_rescale=True, rescale_factor=1 / 255,
                           do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                           do_convert_rgb=True).save_pretrained(clip_dir)
        for f in tok_dir.iterdir():   # the same CLIP BPE tokenizer, so that clip/ loads on its own
            shutil.copy(f, clip_dir / f.name)
    round_fp16(clip)
    clip_acc = clip_zero_shot(clip, tokenizer, xt, yt)
    log(f"clip zero-shot test accuracy {clip_acc:.4f}")
    done("clip")

    text_encoder = round_fp16(text_encoder_from_clip(clip))
    with torch.no_grad():
        caps = data.all_captions() + [""]
        text_emb = text_encoder(tokenize(tokenizer, caps)).last_hidden_state

    stage("save")
    # reference: n_reference held-out test images, balanced over classes, seeded choice
    g = torch.Generator().manual_seed(seed + 500)
    xt_all, yt_all = torch.from_numpy(xt_np), torch.from_numpy(yt_np)
    per = budget.n_reference // 10
    ref_idx = torch.cat([torch.nonzero(yt_all == c).flatten()[
        torch.randperm(int((yt_all == c).sum()), generator=g)[:per]] for c in range(10)]).sort().values
    np.savez_compressed(out / "reference.npz", images=xt_all[ref_idx].numpy(), labels=yt_all[ref_idx].numpy(),
                        test_index=ref_idx.numpy())
    done("save")

    stage("noise_tolerance")
    tol = noise_tolerance(vae, sf, classifier, xt[:1000], yt[:1000], seed + 600)
    done("noise_tolerance")

    report = dict(
        command=f"python -m hpyn.toy.train --out {out}" + (" --quick" if quick else "") + f" --seed {seed}"
        + (f" --stop-after {stop_after}" if stop_after else ""),
        budget=asdict(budget), seed=seed, threads=threads, torch=torch.__version__,
        seconds=times, classifier_test_accuracy=round(cls_acc, 4), classifier_test_n=len(xt),
        vae=dict(scaling_factor=sf, test_psnr_db=round(vae_psnr, 2),
                 classifier_accuracy_on_reconstructions=round(vae_rec_acc, 4),
                 mean_posterior_std_scaled=round(post_std_scaled, 4), latent_noise_tolerance=tol),
        clip_zero_shot_test_accuracy=round(clip_acc, 4),
        reference=dict(n=len(ref_idx), source="Fashion-MNIST t10k, balanced over classes, seeded"),
        pipeline="pipeline", unet_steps_done=0,
    )

    def write_report():
        report["total_seconds"] = round(time.time() - _T0, 1)
        (out / "train_report.json").write_text(json.dumps(report, indent=2))

    def checkpoint(unet_ema, steps_done):
        save_pipeline(out, vae, text_encoder, tok_dir, unet_ema)
        report["unet_steps_done"] = steps_done
        write_report()
        log(f"checkpoint: pipeline saved with EMA UNet after {steps_done} steps")

    stage("unet")
    unet = train_unet(mean, std, y, text_emb, sf, budget, seed + 400, on_checkpoint=checkpoint,
                      stop_after=stop_after)
    done("unet")
    save_pipeline(out, vae, text_encoder, tok_dir, unet)
    shutil.rmtree(tok_dir)
    shutil.rmtree(vae_path, ignore_errors=True)
    report["unet_steps_done"] = min(budget.unet_steps, stop_after or budget.unet_steps)
    write_report()
    log(f"done: {json.dumps(report['seconds'])}")
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m hpyn.toy.train", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (the shipped weights live in hpyn/toy/weights)")
    ap.add_argument("--quick", action="store_true", help="tiny budget smoke run (minutes); never ship it")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: faster than 2 on a CPU shared with other jobs)")
    ap.add_argument("--data", default=None, help="folder with the Fashion-MNIST idx .gz files")
    ap.add_argument("--resume", action="store_true",
                    help="reuse stage outputs already in --out (classifier, stage_vae/, clip/) instead of retraining "
                         "them; stages are deterministic and shipped in fp16, so the result is the same")
    ap.add_argument("--stop-after", type=int, default=None,
                    help="stop the U-Net after this many steps of the unchanged schedule (reproduces a checkpoint)")
    a = ap.parse_args(argv)
    if a.threads < 1:
        ap.error(f"--threads must be >= 1, got {a.threads}")
    if a.stop_after is not None and a.stop_after < 1:
        ap.error(f"--stop-after must be >= 1, got {a.stop_after}")
    train(a.out, quick=a.quick, seed=a.seed, threads=a.threads, data_root=a.data, stop_after=a.stop_after,
          resume=a.resume)


if __name__ == "__main__":
    main()
