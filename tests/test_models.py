"""Every registered model, at its tiny size: gradients, finiteness under every missingness pattern,
determinism, eval without the complete input, BERT text, input checks, ablation switches, stages.

Batches are built here from random tensors (erased frames zeroed, masks cleared), independent of
raymsa.missing, so a failure here is the model's.
"""

from __future__ import annotations

import time
import typing

import pytest
import torch
import torch.nn.functional as F

from raymsa.batch import MODALITIES, SUBSETS, UNK_ID, Batch, subset_modalities
from raymsa.config import ConfigError
from raymsa.models import DataSpec, build_model, get_entry, list_models, model_config
from raymsa.models.encoders import SequenceEncoder, erasure_evidence, window_proj

SPEC = DataSpec(dims={"text": 32, "audio": 5, "vision": 7}, seq_lens={"text": 6, "audio": 20, "vision": 24})
BERT_SPEC = DataSpec(dims=SPEC.dims, seq_lens=SPEC.seq_lens, text_ids=True)
MODELS = list_models()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a loaded 2-core machine two OpenMP threads
    waiting on each other can make a 20 ms step take seconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_batch(spec: DataSpec = SPEC, b: int = 6, *, subset: str = "lav", rate: float = 0.0, mixed: bool = False,
               zero_len: bool = False, seed: int = 0) -> Batch:
    """Random batch with its complete version attached.

    subset: modalities kept (the others fully dropped); rate: share of valid frames erased in kept
    modalities; mixed: per sample a random non-empty subset and a random rate; zero_len: sample 0
    has length 0 in every modality, sample 1 in audio only."""
    g = torch.Generator().manual_seed(seed)
    keep = {m: torch.full((b,), m in subset_modalities(subset)) for m in MODALITIES}
    rates = torch.full((b,), rate)
    if mixed:
        rates = torch.rand(b, generator=g)
        pick = torch.randint(0, len(SUBSETS), (b,), generator=g)
        keep = {m: torch.tensor([m in subset_modalities(SUBSETS[i]) for i in pick]) for m in MODALITIES}
    feats, erased, valid, observed = {}, {}, {}, {}
    for m in MODALITIES:
        t, d = spec.seq_lens[m], spec.dims[m]
        lengths = torch.randint(1, t + 1, (b,), generator=g)
        if zero_len:
            lengths[0] = 0
            if m == "audio":
                lengths[1] = 0
        valid[m] = torch.arange(t) < lengths.unsqueeze(1)  # (B, T)
        observed[m] = valid[m] & (torch.rand(b, t, generator=g) >= rates.unsqueeze(1)) & keep[m].unsqueeze(1)
        feats[m] = torch.randn(b, t, d, generator=g) * valid[m].unsqueeze(-1)  # (B, T, D)
        erased[m] = feats[m] * observed[m].unsqueeze(-1)
    labels = torch.rand(b, generator=g) * 6 - 3
    ids = None
    if spec.text_ids:
        t = spec.seq_lens["text"]
        tok = torch.randint(1000, 30000, (b, t), generator=g) * valid["text"]
        ids = torch.stack([tok, valid["text"].long(), torch.zeros_like(tok)], dim=1)  # (B, 3, T)
    complete = Batch(**feats, valid=valid, observed=dict(valid), labels=labels, text_ids=ids)
    ids_erased = None
    if ids is not None:
        ids_erased = ids.clone()
        ids_erased[:, 0][valid["text"] & ~observed["text"]] = UNK_ID
    return Batch(**erased, valid=valid, observed=observed, labels=labels, text_ids=ids_erased, complete=complete)


def call(model, batch: Batch, knowledge: str = "unknown"):
    """The loop's call: the model input of the arm, and the loss targets in training only."""
    inputs, targets = batch.split(knowledge)
    return model(inputs, targets) if model.training else model(inputs)


def tiny(name: str, spec: DataSpec = SPEC, seed: int = 0, **fields):
    torch.manual_seed(seed)
    return build_model(name, fields, spec=spec, tiny=True)


def total_loss(model, batch: Batch, out) -> torch.Tensor:
    weights = model.loss_weights()
    return F.mse_loss(out["pred"], batch.labels) + sum(weights[k] * v for k, v in out["losses"].items())


def last_stage(model):
    model.set_stage(model.stages()[-1].name)
    return model


def assert_finite(out, b: int) -> None:
    assert out["pred"].shape == (b,)
    assert torch.isfinite(out["pred"]).all(), out["pred"]
    bad = {k: float(v) for k, v in out["losses"].items() if not torch.isfinite(v)}
    assert not bad, bad


# ---- registry and configs ----------------------------------------------------------------------

def test_registry_names():
    assert {"fsrf", "senti_ifusion", "late_fusion", "lnln", "mult"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_every_weight_and_temperature_is_documented(name):
    fields = get_entry(name).config_cls.model_fields
    tuned = [k for k in fields if k.startswith(("w_", "tau_"))]
    for k in tuned:
        f = fields[k]
        assert f.default is not None and f.description and "search" in f.description, k
        bounds = {type(m).__name__ for m in f.metadata}
        assert bounds & {"Ge", "Gt"} and "Le" in bounds, (k, bounds)
    if name not in ("late_fusion", "mult"):  # MulT has no auxiliary loss: only dropouts to tune
        assert tuned


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("bad, key", [({"d_model": 30, "n_heads": 4}, "n_heads"),
                                      ({"audio_kernel": 2, "audio_stride": 4}, "audio_kernel"),
                                      ({"no_such_field": 1}, "no_such_field"),
                                      ({"dropout": 2.0}, "dropout")])
def test_bad_config_is_a_config_error(name, bad, key):
    with pytest.raises(ConfigError, match=key):
        model_config({"name": name, **bad})


# ---- gradients, finiteness, determinism --------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_gets_a_finite_gradient(name):
    model = last_stage(tiny(name)).train()
    batch = make_batch(rate=0.0)
    out = call(model, batch)
    assert set(out["losses"]) <= set(model.loss_weights())
    total_loss(model, batch, out).backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: {pname} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"


PATTERNS = ([{"subset": s} for s in SUBSETS] + [{"rate": r} for r in (0.0, 0.5, 1.0)]
            + [{"mixed": True}, {"zero_len": True}, {"zero_len": True, "rate": 1.0}])


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
@pytest.mark.parametrize("name", MODELS)
def test_finite_under_every_missingness_pattern(name, pattern):
    model = last_stage(tiny(name)).train()
    batch = make_batch(**pattern)
    out = call(model, batch)
    assert_finite(out, batch.size)
    total_loss(model, batch, out).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    with torch.no_grad():
        assert_finite(call(model, batch), batch.size)


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_same_output(name):
    batch = make_batch(mixed=True)
    outs = []
    for _ in range(2):
        model = tiny(name, seed=3).train()
        torch.manual_seed(7)  # dropout
        outs.append(call(model, batch))
    assert torch.equal(outs[0]["pred"], outs[1]["pred"])
    for k, v in outs[0]["losses"].items():
        assert torch.equal(v, outs[1]["losses"][k]), k


@pytest.mark.parametrize("name", MODELS)
def test_eval_needs_no_complete_input(name):
    model = tiny(name).eval()
    batch = make_batch(rate=0.5)
    batch.complete = None
    with torch.no_grad():
        assert_finite(call(model, batch), batch.size)


@pytest.mark.parametrize("name", MODELS)
def test_training_without_complete_is_a_clear_error_when_needed(name):
    model = tiny(name).train()
    batch = make_batch(rate=0.5)
    batch.complete = None
    if model.needs_complete:
        with pytest.raises(ValueError, match="targets.complete"):
            call(model, batch)
    else:
        assert_finite(call(model, batch), batch.size)


@pytest.mark.parametrize("name", MODELS)
def test_tiny_step_is_fast(name):
    model = last_stage(tiny(name)).train()
    batch = make_batch(b=8, mixed=True)
    times = []
    for _ in range(4):  # the first is a warm-up; the best of the rest discounts other processes' load
        t0 = time.perf_counter()
        total_loss(model, batch, call(model, batch)).backward()
        times.append(time.perf_counter() - t0)
    assert min(times[1:]) < 1.0, times


# ---- encoder -----------------------------------------------------------------------------------

def test_encoder_fully_masked_rows_are_finite_and_masks_pool_by_any():
    torch.manual_seed(0)
    enc = SequenceEncoder(5, 16, n_heads=2, layers=2, ff_mult=2, dropout=0.0, kernel=4, stride=4, n_tokens=1)
    x = torch.randn(3, 10, 5)
    valid = torch.ones(3, 10, dtype=torch.bool)
    observed = valid.clone()
    observed[0] = False  # modality entirely missing
    observed[1] = False
    observed[1, 3] = True  # one frame keeps its window (frames 0-3) observed
    valid[2, 1:] = False  # length 1
    observed[2] = valid[2]
    x = x * observed.unsqueeze(-1)
    out = enc(x, valid, observed)
    assert out.seq.shape == (3, 3, 16) and out.tokens.shape == (3, 1, 16)  # ceil(10 / 4) = 3 steps
    assert torch.isfinite(out.seq).all() and torch.isfinite(out.tokens).all()
    assert out.attend.tolist() == [[False] * 3, [True, False, False], [True, False, False]]
    assert out.valid[2].tolist() == [True, False, False]
    out.tokens.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)


@pytest.mark.parametrize("k, s, t, pads, bias", [
    (1, 1, 7, (0, 0), True),    # text: kernel 1
    (4, 4, 10, (0, 2), True),   # shared encoders: 'same' padding to ceil(T / s) windows
    (3, 3, 8, (0, 0), False),   # LNLN 'none' padding: the trailing partial window is dropped
    (3, 3, 2, (0, 1), False),   # shorter than a kernel: padded to one window
    (5, 1, 9, (2, 2), True),    # overlapping windows (MulT): the Conv1d itself
])
def test_window_proj_is_the_conv_it_replaces(k, s, t, pads, bias):
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(6, 8, k, stride=s, bias=bias)
    x = torch.randn(3, t, 6, requires_grad=True)
    ref = conv(F.pad(x.transpose(1, 2), pads)).transpose(1, 2)
    out = window_proj(conv, x, pads)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    grads = torch.autograd.grad((out * g).sum(), [x, conv.weight])
    ref_grads = torch.autograd.grad((ref * g).sum(), [x, conv.weight])
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


def test_erasure_evidence_counts_exact_zero_frames_only():
    b, t = 2, 6
    feats = {m: torch.randn(b, t, 4) for m in MODALITIES}
    feats["audio"][0, :3] = 0
    feats["audio"][0, 3, 1:] = 0  # one non-zero value: not erased
    feats["audio"][1, 0] = -0.0  # negative zero is zero
    feats["vision"][1, 4:] = 0  # zero but past the length: padding, not erasure
    feats["vision"][0, 0, 0] = float("nan")
    valid = {m: torch.ones(b, t, dtype=torch.bool) for m in MODALITIES}
    valid["vision"][1, 4:] = False
    batch = Batch(text=feats["text"], audio=feats["audio"], vision=feats["vision"], labels=torch.zeros(b),
                  valid=valid, observed=valid)
    ev = erasure_evidence(batch.model_input("unknown"))
    torch.testing.assert_close(ev, torch.tensor([[0.0, 3 / 6, 0.0], [0.0, 1 / 6, 0.0]]))


# ---- BERT text ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_bert_text_encoder_runs_forward_and_backward(name):
    model = last_stage(tiny(name, spec=BERT_SPEC, text_encoder="bert")).train()
    batch = make_batch(BERT_SPEC, mixed=True, zero_len=True)
    out = call(model, batch)
    assert_finite(out, batch.size)
    total_loss(model, batch, out).backward()
    emb = model.encoders.bert.embeddings.word_embeddings.weight
    assert emb.grad is not None and torch.isfinite(emb.grad).all()


def test_bert_from_a_local_directory(tmp_path):
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=30522, hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=48)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(tmp_path)
    model = tiny("late_fusion", spec=BERT_SPEC, text_encoder="bert", bert_path=str(tmp_path)).train()
    assert model.encoders.bert.config.hidden_size == 24
    batch = make_batch(BERT_SPEC, rate=0.5)
    total_loss(model, batch, call(model, batch)).backward()


def test_bert_missing_path_is_a_config_error_naming_it(tmp_path):
    missing = tmp_path / "no_bert_here"
    with pytest.raises(ConfigError, match="no_bert_here"):
        tiny("fsrf", spec=BERT_SPEC, text_encoder="bert", bert_path=str(missing))
    with pytest.raises(ConfigError, match=str(tmp_path.name)):
        tiny("fsrf", spec=BERT_SPEC, text_encoder="bert", bert_path=str(tmp_path))  # exists, holds no model


def test_bert_without_ids_in_the_data_is_a_config_error():
    with pytest.raises(ConfigError, match="text_bert"):
        tiny("late_fusion", spec=SPEC, text_encoder="bert")


def test_bert_batch_without_ids_is_a_clear_error():
    model = tiny("late_fusion", spec=BERT_SPEC, text_encoder="bert")
    batch = make_batch(BERT_SPEC)
    batch.text_ids = batch.text_ids[:, :2]
    with pytest.raises(ValueError, match="text_ids"):
        call(model, batch)


# ---- input checks ------------------------------------------------------------------------------

def _wrong_dim(b: Batch) -> None:
    b.audio = torch.zeros(b.size, 20, 6)


def _missing_modality(b: Batch) -> None:
    b.vision = None


def _wrong_mask_shape(b: Batch) -> None:
    b.observed["text"] = b.observed["text"][:, :-1]


def _float_mask(b: Batch) -> None:
    b.valid["audio"] = b.valid["audio"].float()


def _wrong_labels(b: Batch) -> None:
    b.labels = b.labels.unsqueeze(1)


def _complete_mismatch(b: Batch) -> None:
    b.complete.vision = b.complete.vision[:, :-2]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("corrupt, match", [(_wrong_dim, r"inputs\.audio .*D=5"),
                                            (_missing_modality, r"inputs\.vision is missing"),
                                            (_wrong_mask_shape, r"targets\.observed\['text'\]"),
                                            (_float_mask, r"inputs\.valid\['audio'\].*torch.bool"),
                                            (_wrong_labels, r"targets\.labels"),
                                            (_complete_mismatch, r"targets\.complete\..*vision")])
def test_check_batch_names_the_tensor(name, corrupt, match):
    model = tiny(name).train()
    batch = make_batch()
    corrupt(batch)
    if corrupt is _complete_mismatch and not model.needs_complete:
        pytest.skip(f"{name} reads no complete input, so it has none to check")
    with pytest.raises(ValueError, match=match):
        call(model, batch)


# ---- ablation switches -------------------------------------------------------------------------

ABLATIONS = [
    ("fsrf", "use_factorization", {"sim", "orth", "recon", "trans", "noise"}),
    ("fsrf", "use_distill", {"distill", "distill_rev"}),
    ("fsrf", "use_align", {"align"}),
    ("senti_ifusion", "use_integrity", {"integrity"}),
    ("senti_ifusion", "use_completion", {"feat", "sem", "uni", "consist", "orth"}),
    ("senti_ifusion", "use_adaptive_fusion", set()),
    ("senti_ifusion", "two_stage", set()),
]


@pytest.mark.parametrize("name, switch, gone", ABLATIONS, ids=[f"{n}-{s}" for n, s, _ in ABLATIONS])
def test_ablation_switch_off_runs_and_drops_its_losses(name, switch, gone):
    full = last_stage(tiny(name)).train()
    model = last_stage(tiny(name, **{switch: False})).train()
    batch = make_batch(mixed=True, zero_len=True)
    out = call(model, batch)
    assert_finite(out, batch.size)
    assert gone <= set(call(full, batch)["losses"])
    assert not gone & set(out["losses"]) and not gone & set(model.loss_weights())
    total_loss(model, batch, out).backward()


def test_fsrf_all_switches_off_needs_no_complete_input():
    model = tiny("fsrf", use_factorization=False, use_distill=False, use_align=False).train()
    assert not model.needs_complete
    batch = make_batch(rate=0.5)
    batch.complete = None
    out = call(model, batch)
    assert_finite(out, batch.size)
    # every switchable loss is gone; the integrity estimate's MSE is always on (docs/models.md)
    assert set(out["losses"]) == set(model.loss_weights()) == {"integrity"}


def test_senti_hard_dominance_runs_and_reaches_the_quality_scorer():
    model = last_stage(tiny("senti_ifusion", dominant="hard")).train()
    batch = make_batch(mixed=True)
    out = call(model, batch)
    assert_finite(out, batch.size)
    total_loss(model, batch, out).backward()
    assert all(p.grad is not None for p in model.quality.parameters())


# ---- stages ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_stages_cover_the_run_and_every_stage_runs(name):
    model = tiny(name).train()
    stages = model.stages()
    assert abs(sum(s.fraction for s in stages) - 1.0) < 1e-9
    assert model.stage == stages[0].name
    batch = make_batch(mixed=True)
    for s in stages:
        model.set_stage(s.name)
        out = call(model, batch)
        assert_finite(out, batch.size)
        total_loss(model, batch, out).backward()
    with pytest.raises(ValueError, match="unknown stage"):
        model.set_stage("no_such_stage")


def test_senti_two_stage_schedule_and_weights():
    model = tiny("senti_ifusion", stage1_fraction=0.25, joint_completion_scale=0.4, w_feat=1.0)
    assert [(s.name, s.fraction) for s in model.stages()] == [("completion", 0.25), ("joint", 0.75)]
    assert model.loss_weights()["feat"] == 1.0
    model.set_stage("joint")
    assert model.loss_weights()["feat"] == pytest.approx(0.4)
    assert model.loss_weights()["integrity"] == model.config.w_integrity
    # stage 'completion' leaves the fusion out of the graph: DDP needs find_unused_parameters
    model.set_stage("completion")
    model.train()
    batch = make_batch()
    total_loss(model, batch, call(model, batch)).backward()
    assert all(p.grad is None for p in model.fusion.parameters())
    assert model.integrity["audio"].query.grad is not None

    single = tiny("senti_ifusion", two_stage=False)
    assert [s.name for s in single.stages()] == ["joint"]
    assert single.loss_weights()["feat"] == single.config.w_feat


def test_tiny_variant_overrides_only_sizes():
    for name in MODELS:
        entry = get_entry(name)
        cfg = model_config({"name": name, "variant": "tiny"})
        assert cfg.d_model == entry.tiny["d_model"]
        assert not any(k.startswith(("w_", "tau_", "use_")) for k in entry.tiny)
        assert typing.get_args(type(cfg).model_fields["name"].annotation) == (name,)
