"""Does each LNLN part do measurable work in a trained checkpoint? On 64 test samples of the embedded
MOSI-like data at intra rates 0, 0.5, 0.9 (seeded masks), under unknown missingness:

    python benchmarks/lnln_parts.py RUN_DIR      (RUN_DIR: a python -m raymsa.train output of lnln)

prints per rate: the completeness estimate against the true text fraction (mean, correlation, MSE
and the truth's variance: an MSE at the variance means the check ignores its input), the
discriminator's accuracy and CE (0.5 / ln 2 = chance), the prediction's spread, how much the
prediction moves when the proxy is replaced by its batch mean or by zeros, and for proxy, h_d,
hyper and fused: spread (between-sample std / |mean|; 0 = a constant) and the mean centred cosine
between samples."""
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from raymsa.data import load_default  # noqa: E402
from raymsa.missing import ScenarioConfig, apply_missingness, eval_missingness  # noqa: E402
from raymsa.models import DataSpec, build_model  # noqa: E402
from raymsa.train.batches import SplitTensors  # noqa: E402
from raymsa.train.config import parse_train_config  # noqa: E402

ck = torch.load(sys.argv[1] + "/checkpoint/state.pt", weights_only=True, map_location="cpu")
import json; cfg = parse_train_config(json.loads(ck["config"]), "ckpt")
data = load_default(like="mosi")
model = build_model("lnln", cfg.model, spec=DataSpec.from_data(data))
model.load_state_dict(ck["best_model"]); model.eval()
st = SplitTensors.from_split(data["test"], 64)
full = st.batch(torch.arange(len(st)))
res = {}
for rate in (0.0, 0.5, 0.9):
    miss = eval_missingness(full.valid, ScenarioConfig(kind="intra"), rate, seed=5)
    b = apply_missingness(full, miss, full.index)
    inputs = b.model_input()
    with torch.no_grad():
        h = model.tokens(inputs)
        p = model.parts(inputs, h)
        pred = model.head(p["fused"]).squeeze(-1)
        truth = b.integrity[:, 0]
        w = p["w_hat"].squeeze(-1)
        def spread(x):  # between-sample std over dims / norm of the mean: 0 = a constant
            x = x.flatten(1); return float(x.std(0).mean() / x.mean(0).abs().mean().clamp_min(1e-8))
        def centred_cos(x):
            x = x.flatten(1); x = x - x.mean(0); x = F.normalize(x, dim=1); c = x @ x.T
            n = c.shape[0]; return float((c.sum() - c.diag().sum()) / (n * (n - 1)))
        # proxy's effect: replace it by its batch mean, recompute the prediction
        w3 = w[:, None, None]
        def pred_with(proxy):
            hd = proxy * (1 - w3) + h["text"] * w3
            hs = model.lang(hd, keep_all=True); hy = model.h_hyper.expand(len(w), -1, -1)
            for layer, hdi in zip(model.hyper, hs): hy = layer(hdi, h["audio"], h["vision"], hy)
            return model.head(model.fusion(hy, hs[-1])[:, 1:].mean(1)).squeeze(-1)
        d_proxy = float((pred_with(p["proxy"].mean(0, keepdim=True).expand_as(p["proxy"])) - pred).abs().mean())
        d_zero = float((pred_with(torch.zeros_like(p["proxy"])) - pred).abs().mean())
        # discriminator: accuracy at telling h_d tokens (1) from the complete input's language tokens (0)
        hc = model.tokens(full.model_input())["text"]
        logits = model.discriminator(torch.cat([p["h_d"], hc]).flatten(0, 1))
        lab = torch.cat([torch.ones(p["h_d"].shape[0] * p["h_d"].shape[1]), torch.zeros(hc.shape[0] * hc.shape[1])]).long()
        acc = float((logits.argmax(1) == lab).float().mean())
        # reconstruction against the plain copy of the incomplete tokens, and the tokens' own spread
        hcs = model.tokens(full.model_input())
        rec = {m: float(F.mse_loss(model.reconstruct[m](h[m]), hcs[m])) for m in h}
        copy = {m: float(F.mse_loss(h[m], hcs[m])) for m in h}
        tok = {m: spread(hcs[m]) for m in h}
        ce = float(F.cross_entropy(logits, lab))
    print(f"rate {rate}: w_hat mean {float(w.mean()):.3f} vs truth {float(truth.mean()):.3f}, corr "
          f"{float(torch.corrcoef(torch.stack([w, truth]))[0,1]) if truth.std() > 0 else float('nan'):.3f}, MSE {float(((w-truth)**2).mean()):.4f} "
          f"(var of truth {float(truth.var()):.4f}) | disc acc {acc:.3f} CE {ce:.3f} | pred std {float(pred.std()):.3f} "
          f"| |Δpred| proxy->batch mean {d_proxy:.4f}, proxy->0 {d_zero:.4f} | spread/centred-cos "
          + " ".join(f"{k} {spread(p[k]):.3f}/{centred_cos(p[k]):.3f}" for k in ("proxy", "h_d", "hyper", "fused"))
          + " | rec/copy MSE " + " ".join(f"{m[0]} {rec[m]:.4f}/{copy[m]:.4f}" for m in rec)
          + " | complete-token spread " + " ".join(f"{m[0]} {tok[m]:.3f}" for m in tok))
