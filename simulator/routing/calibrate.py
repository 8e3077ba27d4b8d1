"""Calibration of the synthetic routing model against real routing statistics.

Reference data (simulator/data/routing-reference.json, rebuilt by `build_reference` from the raw public
data in ../shared/traces_raw and the converted ESFT traces) holds, per model and workload, the selection
counts per expert at some MoE layers, and where a per-token trace exists, the consecutive-token overlap
and mean router scores by rank:
- deepseek-v2-lite: traces/esft-{intent,law,summary,translation} (all 26 layers; deepseek-ai/ESFT, MIT)
- mixtral-8x7b, olmoe-1b-7b: allenai/OLMoE routing_output_counts, layers 0/7/15, 5-6 domains (Apache-2.0)
- qwen3-30b-a3b: doramirdor/mbolt decode-time heat, all 48 layers (MIT)

Fitting (`fit_params`), with common random numbers so every objective is a smooth function of one scalar:
- skew per reference layer: bisection to the workload-mean popularity entropy; other layers interpolate
  the fitted skew linearly in relative depth (layer / (layers - 1)), clamped at the ends.
- locality per layer: bisection to the workload-mean consecutive overlap where a per-token trace exists;
  otherwise the deepseek-v2-lite fit, interpolated in relative depth (an assumption, stated in the file).
- score_scale: bisection to the mean top-k score mass of the ESFT traces; reused for other models.
A model without data of its own takes its PROXY's skew by relative depth (mixtral-8x22b from
mixtral-8x7b), or else deepseek-v2-lite's (skew is in noise units, so it transfers across expert counts).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from simulator.config.model import ModelSpec, list_presets, load_model
from simulator.errors import UserError
from simulator.routing.stats import popularity_stats, selection_counts, trace_stats
from simulator.routing.synthetic import DATA_DIR, SynthParams, popularity_shape, topk_scores
from simulator.routing.trace import load_trace

REFERENCE_PATH = DATA_DIR / "routing-reference.json"
PROXY = {"mixtral-8x22b": "mixtral-8x7b"}  # models without routing data -> model whose fit they borrow
LOCALITY_FROM = "deepseek-v2-lite"          # the only model with per-token traces (temporal locality)
FIT_SAMPLES = 8000                          # Monte-Carlo tokens per objective evaluation
FIT_SEED = 12345


# ---------------------------------------------------------------- reference data
def build_reference(raw_dir: str | Path, traces_dir: str | Path) -> dict:
    """Collect the aggregate reference statistics from the raw public data and the ESFT traces."""
    raw_dir, traces_dir = Path(raw_dir), Path(traces_dir)
    models = {}
    esft = sorted(traces_dir.glob("esft-*"))
    if not esft:
        raise UserError("no esft-* traces (run `moesim trace import-esft` first)", source=traces_dir)
    workloads = {}
    for path in esft:
        trace = load_trace(path)
        st = trace_stats(trace)
        workloads[path.name.removeprefix("esft-")] = {
            "tokens": st["tokens"], "counts": selection_counts(trace).tolist(),
            "consecutive_overlap": [round(v, 6) for v in st["consecutive_overlap"]],
            "mean_scores": [round(v, 6) for v in st["mean_scores"]]}
    meta = trace.meta
    models["deepseek-v2-lite"] = {
        "source": meta.source.rsplit(" ", 1)[0] + " results/expert_scores (via traces/esft-*)",
        "commit": meta.commit, "license": "MIT", "num_experts": 64, "top_k": 6,
        "layer_index": list(range(meta.layers)), "workloads": workloads}

    olmoe_file = raw_dir / "allenai_OLMoE" / "routing_output_counts.json"
    olmoe = _read_json(olmoe_file)
    for name, key, experts, k in (("mixtral-8x7b", "mistral", 8, 2), ("olmoe-1b-7b", "olmoe", 64, 8)):
        try:
            domains = olmoe[key]["expert_counts"]
            wl = {}
            for domain, per_layer in sorted(domains.items()):
                counts = [[int(layer.get(str(e), 0)) for e in range(experts)] for layer in per_layer]
                wl[domain] = {"tokens": sum(counts[0]) // k, "counts": counts}
        except (KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"unexpected layout ({exc})", source=olmoe_file, field=key) from None
        models[name] = {
            "source": "https://github.com/allenai/OLMoE scripts/routing_output (expert_counts, top-k)",
            "commit": "357454f4f647385839c0ff6b99a688dc7cd9c13f", "license": "Apache-2.0",
            "num_experts": experts, "top_k": k, "layer_index": [0, 7, 15], "workloads": wl}

    qwen_file = raw_dir / "doramirdor_mbolt" / "coactivation_qwen3-30b-a3b.json.gz"
    qwen = _read_json(qwen_file)
    try:
        counts = [[int(c) for c in layer["heat"]] for layer in qwen["layers"]]
        models["qwen3-30b-a3b"] = {
            "source": "https://github.com/doramirdor/mbolt results/colibri-119/coactivation_qwen3-30b-a3b.json "
                      "(llama.cpp decode on an IQ3_XXS GGUF)",
            "commit": "e7e9dbf770b6b7171f47a42173dfcf01c083d819", "license": "MIT",
            "num_experts": int(qwen["n_expert_per_layer"]), "top_k": int(qwen["k"]),
            "layer_index": list(range(len(counts))),
            "workloads": {"decode": {"tokens": int(qwen["n_decode_tokens"]), "counts": counts}}}
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"unexpected layout ({exc})", source=qwen_file) from None
    return {"about": "Aggregate routing statistics the synthetic generator is calibrated against; "
                     "counts[i][e] = tokens routing to expert e at MoE layer layer_index[i]. "
                     "Built by simulator.routing.calibrate.build_reference.", "models": models}


def _read_json(path: Path):
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise UserError("file not found", source=path) from None
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read JSON ({exc.__class__.__name__})", source=path) from None


def load_reference(path: str | Path = REFERENCE_PATH) -> dict:
    return _read_json(Path(path))


def reference_targets(entry: dict) -> dict:
    """Workload-mean statistics of one reference model: per reference layer lists (+ scores if any)."""
    wls = list(entry["workloads"].values())
    pops = [popularity_stats(np.asarray(w["counts"])) for w in wls]
    out = {"layer_index": entry["layer_index"],
           "entropy": np.mean([p["entropy"] for p in pops], axis=0).tolist(),
           "hottest_share": np.mean([p["hottest_share"] for p in pops], axis=0).tolist()}
    if all("consecutive_overlap" in w for w in wls):
        out["consecutive_overlap"] = np.mean([w["consecutive_overlap"] for w in wls], axis=0).tolist()
        out["mean_scores"] = np.mean([w["mean_scores"] for w in wls], axis=0).tolist()
    return out


# ---------------------------------------------------------------- Monte-Carlo objectives
def _bisect(f, target: float, lo: float, hi: float, increasing: bool, iters: int = 30) -> float:
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if (f(mid) < target) == increasing:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


class _Sampler:
    """Fixed noise draws for one (experts, k) so objectives are deterministic in their parameter."""

    def __init__(self, experts: int, k: int):
        rng = np.random.Generator(np.random.PCG64(FIT_SEED))
        self.k = k
        self.shape = popularity_shape(experts)
        self.eps0 = rng.standard_normal((FIT_SAMPLES, experts))
        self.eta = rng.standard_normal((FIT_SAMPLES, experts))

    def entropy(self, skew: float) -> float:
        ids, _ = topk_scores(skew * self.shape + self.eps0, self.k, 1.0)
        counts = np.bincount(ids.ravel(), minlength=self.shape.size)[None]
        return popularity_stats(counts)["entropy"][0]

    def overlap(self, skew: float, phi: float) -> float:
        a, _ = topk_scores(skew * self.shape + self.eps0, self.k, 1.0)
        eps1 = phi * self.eps0 + np.sqrt(1 - phi ** 2) * self.eta
        b, _ = topk_scores(skew * self.shape + eps1, self.k, 1.0)
        return float((a[:, :, None] == b[:, None, :]).sum() / (FIT_SAMPLES * self.k))

    def score_mass(self, skews: list[float], scale: float) -> float:
        return float(np.mean([topk_scores(s * self.shape + self.eps0, self.k, scale)[1].sum(-1).mean()
                              for s in skews]))


def _interp(values: list[float], at_index: list[int], ref_layers: int, layers: int) -> list[float]:
    """Values given at layers `at_index` of a ref_layers-layer model, at every layer of a layers-layer one."""
    x_ref = np.asarray(at_index, float) / max(ref_layers - 1, 1)
    x = np.arange(layers) / max(layers - 1, 1)
    return np.interp(x, x_ref, values).tolist()


def _data_model(name: str, reference: dict) -> str:
    """The model whose reference data `name` is fitted to: itself, its PROXY, else LOCALITY_FROM."""
    data_model = PROXY.get(name, name)
    return data_model if data_model in reference["models"] else LOCALITY_FROM


def fit_params(model: ModelSpec, reference: dict, deepseek_fit: SynthParams | None = None) -> tuple[
        SynthParams, dict]:
    """Fit one model's parameters; returns them and the targets they were fitted to (for comments)."""
    data_model = _data_model(model.name, reference)
    entry = reference["models"][data_model]
    ref_spec = load_model(data_model)
    targets = {**reference_targets(entry), "fitted_to": data_model}
    sampler = _Sampler(ref_spec.num_experts, ref_spec.top_k)
    skew_ref = [_bisect(sampler.entropy, h, 0.0, 6.0, increasing=False) for h in targets["entropy"]]
    skew = _interp(skew_ref, targets["layer_index"], ref_spec.moe_layers, model.moe_layers)
    if "consecutive_overlap" in targets and data_model == model.name:
        locality = [_bisect(lambda p, s=s: sampler.overlap(s, p), o, 0.0, 0.999, increasing=True)
                    for s, o in zip(skew_ref, targets["consecutive_overlap"])]
        locality = _interp(locality, targets["layer_index"], ref_spec.moe_layers, model.moe_layers)
        mass = sum(targets["mean_scores"])
        scale = _bisect(lambda c: sampler.score_mass(skew_ref, c), mass, 0.05, 10.0, increasing=True)
        reference_note = f"{entry['source']} (commit {entry['commit'][:12]}, {entry['license']})"
    else:
        if deepseek_fit is None:
            raise UserError(f"model {model.name} borrows locality and score_scale from {LOCALITY_FROM}; "
                            "fit that first", field="model")
        src = deepseek_fit.locality
        locality = _interp(src, list(range(len(src))), len(src), model.moe_layers)
        scale = deepseek_fit.score_scale
        proxy = f"; skew of {data_model} by relative depth" if data_model != model.name else ""
        reference_note = (f"popularity: {entry['source']} (commit {entry['commit'][:12]}, {entry['license']})"
                          f"{proxy}; locality and score_scale: {LOCALITY_FROM} ESFT fit by relative depth")
    params = SynthParams(model=model.name, reference=reference_note, score_scale=round(scale, 4),
                         skew=[round(v, 4) for v in skew], locality=[round(v, 4) for v in locality])
    return params, targets


def params_yaml(params: SynthParams, targets: dict, model: ModelSpec) -> str:
    """The parameters as commented YAML: every number says what it is and what it was fitted to."""
    own = targets["fitted_to"] == model.name
    at = {i: j for j, i in enumerate(targets["layer_index"])} if own else {}
    lines = [f"# Synthetic-routing parameters for {model.name}; written by `moesim trace calibrate`",
             "# (simulator/routing/calibrate.py). Generative model: simulator/routing/synthetic.py.",
             f"model: {model.name}",
             f"reference: {json.dumps(params.reference)}",
             f"score_scale: {params.score_scale}  # softmax sharpness on logits in noise units; fitted to the "
             "ESFT mean top-k score mass" + (f" {sum(targets['mean_scores']):.4f}" if "mean_scores" in targets
                                             and own else " (borrowed)"),
             "skew:  # per MoE layer: spread (noise units) of the per-expert logit bias; sets popularity skew"]
    for layer, v in enumerate(params.skew):
        j = at.get(layer)
        note = (f"fitted: entropy {targets['entropy'][j]:.3f} bits, hottest share "
                f"{targets['hottest_share'][j]:.4f}" if j is not None else "interpolated in relative depth (held past the fitted ends)")
        lines.append(f"  - {v}  # layer {layer}: {note}")
    lines.append("locality:  # per MoE layer: AR(1) coefficient of the logit noise between consecutive tokens")
    for layer, v in enumerate(params.locality):
        j = at.get(layer)
        note = (f"fitted: consecutive overlap {targets['consecutive_overlap'][j]:.4f}"
                if j is not None and "consecutive_overlap" in targets else
                f"from the {LOCALITY_FROM} fit by relative depth")
        lines.append(f"  - {v}  # layer {layer}: {note}")
    return "\n".join(lines) + "\n"


def calibrate(out_dir: str | Path = DATA_DIR, reference: dict | None = None,
              models: list[str] | None = None) -> list[Path]:
    """Fit and write routing-synth-<model>.yaml for each preset (deepseek-v2-lite first)."""
    reference = reference or load_reference()
    names = models or list_presets()
    order = sorted(set(names) | {LOCALITY_FROM}, key=lambda n: n != LOCALITY_FROM)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, deepseek_fit = [], None
    for name in order:
        model = load_model(name)
        params, targets = fit_params(model, reference, deepseek_fit)
        if name == LOCALITY_FROM:
            deepseek_fit = params
        if name in names:
            path = out_dir / f"routing-synth-{name}.yaml"
            tmp = path.with_suffix(".yaml.tmp")
            tmp.write_text(params_yaml(params, targets, model))
            tmp.replace(path)
            written.append(path)
    return written
