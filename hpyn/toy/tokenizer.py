"""Rebuild the real CLIP BPE tokenizer (49,408 tokens) offline for ``transformers.CLIPTokenizer``.

The source is ``bpe_simple_vocab_16e6.txt.gz`` shipped inside the open_clip wheel (the same merges file
OpenAI's CLIP uses); the vocabulary is built exactly as ``open_clip.tokenizer.SimpleTokenizer`` does it.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def bpe_path() -> Path:
    try:
        import open_clip
    except ImportError as e:  # pragma: no cover
        raise ImportError("building the toy tokenizer needs open_clip_torch (pip install open_clip_torch)") from e
    path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    if not path.exists():  # pragma: no cover
        raise FileNotFoundError(path)
    return path


def write_clip_tokenizer(out_dir: str | Path, max_length: int = 77) -> Path:
    """Write vocab.json, merges.txt and tokenizer configs loadable by ``CLIPTokenizer.from_pretrained``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(bpe_path()).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    vocab = list(_bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408, len(vocab)
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
                                    encoding="utf-8")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
               "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    cfg = dict(special, tokenizer_class="CLIPTokenizer", model_max_length=max_length,
               do_lower_case=True, errors="replace", clean_up_tokenization_spaces=True)
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    return out
