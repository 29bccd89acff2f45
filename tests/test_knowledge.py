"""What a model may see (issue 10): unknown missingness by default, the `known` arm by name, and the
paper components that must do measurable work.

The leak tests go through the evaluator's own call (raymsa.train.evaluate.predict_batch) with masks
made by raymsa.missing for every scenario kind, then change only the erasure masks (the corrupted
features stay as they are): under the default the prediction must not move by a single bit, under
`known` it must move.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from raymsa.batch import MODALITIES, Batch, HiddenFromModel
from raymsa.missing import KINDS, ScenarioConfig, apply_missingness, eval_missingness, train_missingness
from raymsa.models import DataSpec, build_model, list_models
from raymsa.models.encoders import ModalityEncoders, erasure_evidence
from raymsa.models.losses import (LabelReadout, cross_modal_info_nce,
                                  mean_pairwise_cosine, pairwise_cosine_distance, variance_hinge)
from raymsa.models.losses import spread as spread_loss
from raymsa.train.evaluate import predict_batch, summarise_diagnostics

SPEC = DataSpec(dims={"text": 32, "audio": 5, "vision": 7}, seq_lens={"text": 6, "audio": 20, "vision": 24})
BERT_SPEC = DataSpec(dims=SPEC.dims, seq_lens=SPEC.seq_lens, text_ids=True)
MODELS = list_models()
LEVEL = {"subset": "la", "noise": 0.5, "inter": 0.4}  # one incomplete level per kind; others 0.5


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def complete_batch(spec: DataSpec = SPEC, n: int = 12, seed: int = 0) -> Batch:
    """Random features, random lengths >= 2, optional BERT ids; observed = valid."""
    g = torch.Generator().manual_seed(seed)
    feats, valid = {}, {}
    for m in MODALITIES:
        t, d = spec.seq_lens[m], spec.dims[m]
        lengths = torch.randint(2, t + 1, (n,), generator=g)
        valid[m] = torch.arange(t) < lengths.unsqueeze(1)
        feats[m] = torch.randn(n, t, d, generator=g) * valid[m].unsqueeze(-1)
    ids = None
    if spec.text_ids:
        tok = torch.randint(1000, 30000, (n, spec.seq_lens["text"]), generator=g) * valid["text"]
        ids = torch.stack([tok, valid["text"].long(), torch.zeros_like(tok)], dim=1)
    return Batch(**feats, valid=valid, observed=dict(valid), labels=torch.rand(n, generator=g) * 6 - 3,
                 text_ids=ids, index=torch.arange(n))


def erased(kind: str, spec: DataSpec = SPEC) -> Batch:
    batch = complete_batch(spec)
    scen = ScenarioConfig(kind=kind)
    miss = eval_missingness(batch.valid, scen, LEVEL.get(kind, 0.5), seed=5)
    out = apply_missingness(batch, miss, batch.index)
    out.complete = None
    return out


def other_masks(batch: Batch, seed: int = 1) -> Batch:
    """The same corrupted features with other erasure masks: half the valid frames at random."""
    g = torch.Generator().manual_seed(seed)
    obs = {m: batch.valid[m] & (torch.rand(batch.valid[m].shape, generator=g) < 0.5) for m in MODALITIES}
    return dataclasses.replace(batch, observed=obs)


def tiny(name: str, spec: DataSpec = SPEC, **fields):
    torch.manual_seed(0)
    model = build_model(name, fields, spec=spec, tiny=True)
    model.set_stage(model.stages()[-1].name)
    return model.eval()


# ---- the types ---------------------------------------------------------------------------------

def test_model_input_hides_the_masks_unless_known():
    batch = erased("intra")
    inputs = batch.model_input()
    assert inputs.knowledge == "unknown"
    with pytest.raises(HiddenFromModel, match="knowledge: known"):
        inputs.observed
    with pytest.raises(HiddenFromModel):
        inputs.integrity
    assert not any(isinstance(v, dict) and v is batch.observed for v in vars(inputs).values())
    known = batch.model_input("known")
    assert torch.equal(known.integrity, batch.integrity)
    assert all(torch.equal(known.attend(m), batch.observed[m]) for m in MODALITIES)
    assert all(torch.equal(inputs.attend(m), batch.valid[m]) for m in MODALITIES)
    with pytest.raises(HiddenFromModel, match="targets.complete"):
        batch.targets().complete
    with pytest.raises(ValueError, match="knowledge"):
        batch.model_input("oracle")


@pytest.mark.parametrize("name", MODELS)
def test_a_model_takes_no_batch_and_no_targets_in_eval(name):
    model = tiny(name)
    batch = erased("intra")
    with pytest.raises(TypeError, match="ModelInput"):
        model(batch)
    with pytest.raises(ValueError, match="eval mode"):
        model(batch.model_input(), batch.targets())


def test_scenario_knowledge_defaults_to_unknown_and_is_validated():
    assert ScenarioConfig(kind="intra").knowledge == "unknown"
    assert ScenarioConfig(kind="intra", knowledge="known").knowledge == "known"
    with pytest.raises(Exception, match="knowledge"):
        ScenarioConfig(kind="intra", knowledge="oracle")


# ---- leaks: the prediction depends on the erasure masks only under `known` ----------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", MODELS)
def test_eval_prediction_ignores_the_erasure_masks_unless_known(name, kind):
    model = tiny(name)
    a = erased(kind)
    b = other_masks(a)
    assert any(not torch.equal(a.observed[m], b.observed[m]) for m in MODALITIES)
    with torch.no_grad():
        assert torch.equal(predict_batch(model, a, "unknown"), predict_batch(model, b, "unknown"))
        assert not torch.equal(predict_batch(model, a, "known"), predict_batch(model, b, "known"))


@pytest.mark.parametrize("name", MODELS)
def test_bert_prediction_ignores_the_erasure_masks_unless_known(name):
    model = tiny(name, spec=BERT_SPEC, text_encoder="bert")
    a = erased("intra", BERT_SPEC)
    b = other_masks(a)
    with torch.no_grad():
        assert torch.equal(predict_batch(model, a, "unknown"), predict_batch(model, b, "unknown"))
        assert not torch.equal(predict_batch(model, a, "known"), predict_batch(model, b, "known"))


def test_cls_and_sep_stay_attended_under_bert():
    enc = ModalityEncoders(tiny("late_fusion", spec=BERT_SPEC, text_encoder="bert").config, BERT_SPEC, n_tokens=1)
    batch = erased("intra", BERT_SPEC)
    batch = dataclasses.replace(batch, observed={**batch.observed, "text": torch.zeros_like(batch.valid["text"])})
    keys = enc.attend(batch.model_input("known"), "text")  # (B, T): every content token erased
    last = batch.valid["text"].sum(1) - 1
    assert keys[:, 0].all() and keys[torch.arange(batch.size), last].all()
    assert int(keys.sum()) == 2 * batch.size  # nothing but [CLS] and [SEP]
    assert torch.equal(enc.attend(batch.model_input(), "text"), batch.valid["text"])  # unknown: every valid token


def test_erasure_evidence_reads_only_the_input():
    batch = erased("intra")
    ev = erasure_evidence(batch.model_input())
    assert torch.allclose(ev, 1 - batch.integrity, atol=1e-6)  # random features are never exactly zero
    assert torch.equal(ev, erasure_evidence(other_masks(batch).model_input()))


# ---- late fusion: pools over valid frames (zeros included) under unknown ------------------------

def test_late_fusion_pools_valid_frames_zeros_included():
    model = tiny("late_fusion")
    batch = erased("intra")
    inputs = batch.model_input()
    with torch.no_grad():
        enc = model.encoders(inputs)
        for m in MODALITIES:
            assert torch.equal(enc[m].attend, enc[m].valid)
        h = [model.heads[m](model.masked_mean(enc[m].seq, enc[m].valid)) for m in MODALITIES]
        expect = model.fuse(torch.cat(h, -1)).squeeze(-1)
        assert torch.allclose(model(inputs)["pred"], expect, atol=1e-6)
        known = model.encoders(batch.model_input("known"))
        assert any(not torch.equal(known[m].attend, known[m].valid) for m in MODALITIES)


# ---- FSRF ---------------------------------------------------------------------------------------

def _perturbed(model, module_name: str):
    twin = tiny(model.config.name, **{k: getattr(model.config, k) for k in ("use_recovery",)})
    twin.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p in getattr(twin, module_name).parameters():
            p.add_(0.5)
    return twin


def test_fsrf_weights_by_its_estimate_under_unknown_and_by_the_truth_under_known():
    model = tiny("fsrf")
    batch = erased("mixed")
    twin = _perturbed(model, "integrity")
    with torch.no_grad():
        assert not torch.equal(predict_batch(model, batch, "unknown"), predict_batch(twin, batch, "unknown"))
        assert torch.equal(predict_batch(model, batch, "known"), predict_batch(twin, batch, "known"))
        p = model.parts(batch.model_input())
        assert torch.equal(p["w"], p["iota_hat"])


@pytest.mark.parametrize("recovery", [True, False])
def test_fsrf_decoders_feed_the_prediction(recovery):
    model = tiny("fsrf", use_recovery=recovery)
    batch = erased("inter")
    twin = _perturbed(model, "decoder")
    with torch.no_grad():
        moved = not torch.equal(predict_batch(model, batch, "unknown"), predict_batch(twin, batch, "unknown"))
    assert moved == recovery


def test_shared_maps_have_no_bias():
    assert tiny("fsrf").homo[-1].bias is None
    assert tiny("senti_ifusion").consistent.bias is None


def test_anti_collapse_losses_punish_a_constant_and_the_old_one_did_not():
    b, d = 16, 8
    const = torch.ones(b, d)
    spread = torch.randn(b, d, generator=torch.Generator().manual_seed(0)) * 3
    avail = torch.ones(b, 3)
    # the old agreement loss is minimised by one vector for every sample: the collapse
    assert float(pairwise_cosine_distance([const, const, const], avail)) < 1e-6
    # InfoNCE cannot go below log(B) on a constant; it is low when samples are told apart
    assert float(cross_modal_info_nce([const, const, const], avail, 0.2)) == pytest.approx(torch.log(torch.tensor(16.)).item(), rel=1e-4)
    assert float(cross_modal_info_nce([spread, spread, spread], avail, 0.2)) < 0.5
    assert float(variance_hinge(const)) > 0.9 and float(variance_hinge(spread)) == 0.0
    # one shared offset with unit spread passes the hinge yet has cosine ~1: the centroid term sees it
    offset = torch.randn(b, d, generator=torch.Generator().manual_seed(1)) * 1.5 + 20.0
    assert float(variance_hinge(offset)) < 0.1 and mean_pairwise_cosine(offset) > 0.99
    assert float(spread_loss(offset)) > 0.9 and float(spread_loss(spread)) < 0.2
    assert mean_pairwise_cosine(const) == pytest.approx(1.0) and abs(mean_pairwise_cosine(spread)) < 0.3


@pytest.mark.parametrize("name, losses", [("fsrf", {"sim", "var", "integrity"}),
                                          ("senti_ifusion", {"consist", "var", "integrity"})])
def test_anti_collapse_terms_are_trained(name, losses):
    model = tiny(name).train()
    batch = complete_batch()
    miss = train_missingness(batch.valid, ScenarioConfig(kind="mixed"), 1, 0)
    batch = apply_missingness(batch, miss, batch.index)
    out = model(*batch.split())
    assert losses <= set(out["losses"]) and all(model.loss_weights()[k] > 0 for k in losses)
    for k in losses:
        assert out["losses"][k].requires_grad and float(out["losses"][k].detach()) > 0, k


def test_fsrf_task_cannot_write_into_the_noise_part_and_the_penalty_can():
    model = tiny("fsrf").train()
    batch = complete_batch()
    batch = apply_missingness(batch, train_missingness(batch.valid, ScenarioConfig(kind="mixed"), 1, 0), batch.index)
    inputs, targets = batch.split()

    def noise_grad(loss_name):
        model.zero_grad()
        out = model(inputs, targets)
        loss = (out["pred"] - targets.labels).abs().mean() if loss_name == "task" else out["losses"][loss_name]
        loss.backward()
        return sum(float(p.grad.abs().sum()) for p in model.noise.parameters() if p.grad is not None)

    assert noise_grad("task") == 0.0  # the recovery reads N detached: the prediction cannot shape it
    assert noise_grad("noise") > 0
    assert float(model.noise_readout["text"].filled) > 0  # the read-out follows N's training batches


def _held_out_r2(x, y, lam=1.0):
    """Ridge from x to y fitted on the first half, R^2 on the second (no in-sample optimism)."""
    h = len(y) // 2
    mu, sd = x[:h].mean(0), x[:h].std(0)
    a, b = (x[:h] - mu) / sd, (x[h:] - mu) / sd
    w = torch.linalg.solve(a.T @ a + lam * torch.eye(x.shape[1]), a.T @ (y[:h] - y[:h].mean()))
    return float(1 - ((y[h:] - y[:h].mean() - b @ w) ** 2).mean() / y[h:].var(unbiased=False))


@pytest.mark.parametrize("penalty", [True, False])
def test_the_noise_penalty_removes_label_content_spread_over_many_dims(penalty):
    """N holding the label thinly in each of 64 dims (squared correlation ~0.014 per dim, a joint
    read-out's held-out R^2 ~0.3), pulled to stay where it is as a reconstruction would: the
    penalty on its joint read-out empties it; without the penalty it stays."""
    g = torch.Generator().manual_seed(0)
    n, d = 512, 64
    y = torch.randn(n, generator=g)
    start = torch.randn(n, d, generator=g) + 0.12 * y[:, None]
    x = torch.nn.Parameter(start.clone())
    readout = LabelReadout(d).train()
    opt = torch.optim.Adam([x], lr=0.01)
    assert _held_out_r2(start, y) > 0.25
    for _ in range(300):
        idx = torch.randperm(n, generator=g)[:128]
        loss = (x - start).pow(2).mean() + (0.5 * readout.penalty(x[idx], y[idx]) if penalty else 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    left = _held_out_r2(x.detach(), y)
    assert (left < 0.05) if penalty else (left > 0.25), left


# ---- Senti-iFusion ------------------------------------------------------------------------------

def test_senti_semantic_loss_trains_the_completion_not_its_judge():
    model = tiny("senti_ifusion").train()
    batch = apply_missingness(complete_batch(), eval_missingness(complete_batch().valid, ScenarioConfig(kind="mixed"),
                                                                 0.6, 1), torch.arange(12))
    out = model(*batch.split())
    model.zero_grad()
    out["losses"]["sem"].backward()
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in model.sem_head.parameters())
    assert model.queries.grad is not None and float(model.queries.grad.abs().sum()) > 0


def test_senti_a_missing_modality_cannot_dominate_whatever_its_quality():
    model = tiny("senti_ifusion")
    with torch.no_grad():
        model.quality[1].weight.zero_()
        model.quality[1].bias.fill_(100.0)  # every modality maximal quality ...
    b = 5
    x = {m: torch.randn(b, 2, 16) for m in MODALITIES}
    iota = torch.tensor([[0.01, 0.9, 0.5]]).repeat(b, 1)  # ... but text estimated nearly missing
    alpha, _ = model._dominance(x, iota, iota.log())
    assert (alpha.argmax(1) != 0).all()
    with torch.no_grad():
        model.quality[1].weight.normal_(0, 100.0)  # arbitrary quality scores
        model.quality[1].bias.zero_()
    alpha, _ = model._dominance(x, iota, iota.log())
    # bounded quality: log(0.01) + 1 < log(0.9) - 1, text never beats audio
    assert (alpha[:, 0] < alpha[:, 1]).all()


def test_senti_uses_its_estimated_integrity_everywhere():
    model = tiny("senti_ifusion")
    batch = erased("mixed")
    twin = tiny("senti_ifusion")
    twin.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p in twin.integrity.parameters():
            p.add_(0.3)
        for arm in ("unknown", "known"):  # the estimator feeds the prediction under both arms
            assert not torch.equal(predict_batch(model, batch, arm), predict_batch(twin, batch, arm))


# ---- diagnostics -------------------------------------------------------------------------------

def test_diagnostics_summaries():
    truth = torch.tensor([[1.0, 0.5, 0.0], [0.5, 0.5, 1.0]])
    est = torch.tensor([[0.9, 0.7, 0.1], [0.5, 0.5, 0.8]])
    dom = torch.tensor([[0.1, 0.8, 0.1], [0.7, 0.2, 0.1]])
    res = summarise_diagnostics({"integrity": est, "dominance": dom, "part/h/text": torch.ones(2, 4)}, truth)
    assert res["diag/integrity_mae/text"] == pytest.approx(0.05)
    assert res["diag/integrity_bias/audio"] == pytest.approx(0.1)
    assert res["diag/integrity_bias/vision"] == pytest.approx(-0.05)
    assert res["diag/dominant_share/text"] == 0.5 and res["diag/dominant_share/audio"] == 0.5
    assert res["diag/cosine/h/text"] == pytest.approx(1.0)


@pytest.mark.parametrize("name, keys", [("fsrf", {"integrity", "part/homogeneous/audio"}),
                                        ("senti_ifusion", {"integrity", "dominance", "part/consistent/vision"}),
                                        ("late_fusion", set())])
def test_models_expose_their_diagnostics(name, keys):
    model = tiny(name)
    with torch.no_grad():
        d = model.diagnose(erased("mixed").model_input())
    assert keys <= set(d)
    if "integrity" in d:
        assert d["integrity"].shape == (12, 3) and ((d["integrity"] >= 0) & (d["integrity"] <= 1)).all()
