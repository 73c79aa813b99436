"""objectives: measuring a sampler — small-sample FID/KID, CLIP score and PRD, offline-capable.

Main entry point (the search uses this)::

    from objectives.evaluate import Evaluator, evaluate_config

    ev = Evaluator(reference="toy", prompts=None, clip="auto", device=None)   # loads nets once, caches ref feats
    m = ev.evaluate(images_uint8_NCHW, prompts)          # prompts: list[str] of len N (or None: ev.prompts[:N])
    m["fid"], m["kid_mean"], m["kid_std"], m["clip_score"], m["prd_f8"], m["prd_f1_8"], m["n"]   # objectives.metrics
    m["conventions"]   # extractor + weights id, resize policy, N, n_reference, KID/PRD settings, CLIP model id
    m["timings"]       # seconds: features_s, fid_s, kid_s, prd_s, clip_s, total_s

    feats = ev.image_features(images); scores = ev.clip_scores(images, prompts)   # reuse across rungs:
    m = ev.evaluate(features=feats, clip_scores=scores)
    m = evaluate_config(model, sampler_config, ev, prompts=None, seeds=None, n=64)  # hpyn.generate + evaluate

Evaluator(reference, prompts=None, *, clip="auto", extractor="inception-v3-compat", inception_weights=None,
          device=None, n_reference=None, metrics=("fid", "kid", "clip", "prd"), kid_subsets=100,
          kid_subset_size=1000, prd_clusters=20, prd_angles=1001, prd_runs=10, seed=0, batch_size=32, cache=None)

    python -m objectives.evaluate IMAGES_DIR --reference toy --prompts toy --prd-plot prd.png   # one-call CLI
    python -m objectives.references toy --out objectives/data/features    # precompute/ship reference features

Metric names, directions and formats: ``objectives.metrics`` (METRICS, METRIC_KEYS), the one place for them.

Specs (strings); named ones are registries (a miss lists the names), the toy model's entries registered once
in ``objectives.toy``:
    reference  named (REFERENCES): "toy" | "npz:PATH" | "folder:PATH" | "coco2014:ROOT" | "coco2017:ROOT"
               | "laion:CAPTIONS:IMAGES"
    prompts    named (PROMPT_SETS): "toy", "builtin" | "coco2014:ROOT" | "coco2017:ROOT" | "coco:CAPTIONS_JSON"
               | "laion:FILE" | "file:PATH"
    clip       "open_clip:ViT-B-32/openai" (default) | "open_clip:NAME/TAG_OR_FILE" | "hf:PATH_OR_ID"
               | named (CLIP_MODELS): "toy" | None
    extractor  named (EXTRACTORS): "inception-v3-compat" (TF-FID Inception pool3, default) | "toy-classifier"
               (fast, toy-only, not comparable with Inception FIDs)

Pure functions over feature matrices (``objectives.fid``, ``objectives.prd``, ``objectives.clip_score``)::

    fid_from_features(x, y) -> float;  frechet_distance(mu1, s1, mu2, s2) -> float
    kid_from_features(x, y, subsets=100, subset_size=1000, seed=2020) -> (mean, std)
    prd_from_features(gen, ref, num_clusters=20, num_angles=1001, num_runs=10, seed=0) -> PRDCurve
    PRDCurve.f_beta(8) -> (F_8, F_1/8);  plot_prd(curves, "prd.png")
    clip_score(image_emb, text_emb) -> float;  clip_scores(...) -> np.ndarray

Caches (converted Inception weights, reference features) live under ``$HPYN_CACHE`` or ``~/.cache/hpyn``;
precomputed reference features are also looked up (read-only) in ``$HPYN_FEATURES_PATH`` and
``objectives/data/features``. Offline Inception weights: see ``objectives.features``.
"""

# Registers the embedded toy model's prompt set, reference, CLIP and classifier extractor under "toy".
from objectives import toy as _toy  # noqa: E402,F401
