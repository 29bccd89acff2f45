"""raymsa.missing: mask statistics, nesting, determinism, per-batch application, config validation."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from raymsa.batch import MODALITIES, SHORT, SUBSETS, UNK_ID, Batch
from raymsa.config import ConfigError, parse
from raymsa.missing import (
    KINDS,
    ScenarioConfig,
    apply_missingness,
    eval_missingness,
    feature_std,
    missing_stats,
    train_missingness,
)

N = 1500
T = {"text": 40, "audio": 120, "vision": 90}
D = {"text": 16, "audio": 5, "vision": 7}
SEED = 1111


def make_valid(n=N, min_len=20, generator_seed=0, device="cpu"):
    g = torch.Generator().manual_seed(generator_seed)
    out = {}
    for m, t in T.items():
        lengths = torch.randint(min_len, t + 1, (n, 1), generator=g)
        out[m] = (torch.arange(t)[None, :] < lengths).to(device)  # (n, T) prefix masks
    return out


@pytest.fixture(scope="module")
def valid():
    return make_valid()


def erased_fraction(valid_m, obs_m):
    return 1.0 - obs_m.sum().item() / valid_m.sum().item()


def four_sigma(p, n):
    return 4.0 * math.sqrt(max(p * (1 - p), 1e-12) / n) + 1e-6


def scen(kind, **kw):
    return ScenarioConfig(kind=kind, **kw)


# ---------------------------------------------------------------------------------------------
# intra


@pytest.mark.parametrize("r", [0.1, 0.3, 0.5, 0.9])
def test_intra_erased_fraction_matches_rate(valid, r):
    miss = eval_missingness(valid, scen("intra"), r, SEED)
    for m in MODALITIES:
        n = valid[m].sum().item()
        assert abs(erased_fraction(valid[m], miss.observed[m]) - r) < four_sigma(r, n), m
        assert not (miss.observed[m] & ~valid[m]).any()  # never observed outside the padding mask


def test_intra_extremes(valid):
    s = scen("intra", levels=[0.0, 1.0])
    for m in MODALITIES:
        assert torch.equal(eval_missingness(valid, s, 0.0, SEED).observed[m], valid[m])
        assert not eval_missingness(valid, s, 1.0, SEED).observed[m].any()


@pytest.mark.parametrize("kind", ["intra", "inter", "burst", "mixed"])
def test_masks_nested_across_levels(valid, kind):
    s = scen(kind)
    masks = [eval_missingness(valid, s, r, SEED).observed for r in s.levels]
    for lo, hi in zip(masks, masks[1:]):  # what is missing at the lower level is missing at the higher
        for m in MODALITIES:
            assert not (hi[m] & ~lo[m]).any(), m
    # and the curve really moves
    assert sum(masks[0][m].sum() for m in MODALITIES) > sum(masks[-1][m].sum() for m in MODALITIES)


def test_intra_independent_per_modality():
    same = {m: torch.ones(N, 60, dtype=torch.bool) for m in MODALITIES}
    obs = eval_missingness(same, scen("intra"), 0.5, SEED).observed
    agree = (obs["text"] == obs["audio"]).float().mean().item()
    assert abs(agree - 0.5) < four_sigma(0.5, N * 60)
    assert not torch.equal(obs["text"], obs["vision"])


# ---------------------------------------------------------------------------------------------
# inter


def test_inter_rate_rows_and_never_all_missing(valid):
    s = scen("inter")
    for r in s.levels + [2 / 3]:
        miss = eval_missingness(valid, s, r, SEED)
        rows = torch.stack([miss.observed[m].any(dim=1) for m in MODALITIES], dim=1)  # (N, 3) available
        realised = 1.0 - rows.sum().item() / (3 * N)
        assert abs(realised - r) <= 0.5 / (3 * N) + 1e-12, r  # quota: exact up to rounding
        assert rows.any(dim=1).all(), "a sample lost all three modalities"
        for j, m in enumerate(MODALITIES):  # a row is either complete or dropped entirely
            kept = rows[:, j]
            assert torch.equal(miss.observed[m][kept], valid[m][kept])
            assert not miss.observed[m][~kept].any()
    two_thirds = eval_missingness(valid, s, 2 / 3, SEED).observed
    assert (torch.stack([two_thirds[m].any(1) for m in MODALITIES], 1).sum(1) == 1).all()


def test_inter_drops_modalities_evenly(valid):
    miss = eval_missingness(valid, scen("inter"), 1 / 3, SEED)  # exactly one modality per sample
    for m in MODALITIES:
        dropped = (~miss.observed[m].any(dim=1)).float().mean().item()
        assert abs(dropped - 1 / 3) < four_sigma(1 / 3, N), m


def test_inter_above_two_thirds_refused(valid):
    with pytest.raises(ValueError, match="2/3"):
        eval_missingness(valid, scen("inter"), 0.7, SEED)
    with pytest.raises(ConfigError, match="levels"):
        parse(ScenarioConfig, {"kind": "inter", "levels": [0.3, 0.7]}, "study.yaml")


# ---------------------------------------------------------------------------------------------
# subset, mixed, burst, noise


@pytest.mark.parametrize("subset", SUBSETS)
def test_subset_masks(valid, subset):
    miss = eval_missingness(valid, scen("subset"), subset, SEED)
    present = {SHORT[c] for c in subset}
    for m in MODALITIES:
        if m in present:
            assert torch.equal(miss.observed[m], valid[m])
        else:
            assert not miss.observed[m].any()


def test_mixed_is_inter_and_intra_combined(valid):
    ratio, r = 0.5, 0.6
    mixed = eval_missingness(valid, scen("mixed", mixed_inter_ratio=ratio), r, SEED).observed
    intra = eval_missingness(valid, scen("intra"), r, SEED).observed
    inter = eval_missingness(valid, scen("inter"), ratio * r, SEED).observed
    for m in MODALITIES:
        assert torch.equal(mixed[m], intra[m] & inter[m])
        # statistics: kept fraction = (1 - ratio r) (1 - r)
        kept = mixed[m].sum().item() / valid[m].sum().item()
        expect = (1 - ratio * r) * (1 - r)
        sd = math.sqrt(ratio * r * (1 - ratio * r) / N) * (1 - r) + math.sqrt(r * (1 - r) / valid[m].sum().item())
        assert abs(kept - expect) < 4 * sd, m
    rows = torch.stack([mixed[m].any(1) | ~valid[m].any(1) for m in MODALITIES], 1)
    assert rows.any(1).all()


@pytest.mark.parametrize("r", [0.1, 0.35, 0.5, 0.9])
def test_burst_fraction_and_contiguity(valid, r):
    miss = eval_missingness(valid, scen("burst"), r, SEED)
    for m in MODALITIES:
        lengths = valid[m].sum(1)
        erased = (valid[m] & ~miss.observed[m]).sum(1)
        # per sample: floor(rL) or ceil(rL) frames (unbiased rounding); overall: r within sampling error
        assert ((erased - r * lengths).abs() < 1).all()
        sd = 0.5 * math.sqrt(N) / lengths.sum().item()
        assert abs(erased.sum().item() / lengths.sum().item() - r) < 4 * sd + 1e-6
        # one circular run: at most one kept->erased transition walking round the valid frames
        for i in range(0, N, 97):
            seq = miss.observed[m][i, : lengths[i]].int()
            falls = ((seq - torch.roll(seq, -1)) == 1).sum().item()
            assert falls <= 1


def test_noise_observes_everything_and_scales(valid):
    miss = eval_missingness(valid, scen("noise"), 0.3, SEED)
    for m in MODALITIES:
        assert torch.equal(miss.observed[m], valid[m])
    assert torch.allclose(miss.noise_std, torch.full((N,), 0.3))


# ---------------------------------------------------------------------------------------------
# determinism


@pytest.mark.parametrize("kind", KINDS)
def test_eval_deterministic_and_seed_dependent(valid, kind):
    s = scen(kind)
    level = s.levels[len(s.levels) // 2]
    a = eval_missingness(valid, s, level, SEED)
    b = eval_missingness(valid, s, level, SEED)
    for m in MODALITIES:
        assert torch.equal(a.observed[m], b.observed[m])
    if kind in ("intra", "inter", "mixed", "burst"):
        c = eval_missingness(valid, s, level, SEED + 1)
        assert any(not torch.equal(a.observed[m], c.observed[m]) for m in MODALITIES)


@pytest.mark.parametrize("kind", KINDS)
def test_train_deterministic_in_seed_and_epoch(valid, kind):
    s = scen(kind)
    a = train_missingness(valid, s, SEED, epoch=3)
    b = train_missingness(valid, s, SEED, epoch=3)
    c = train_missingness(valid, s, SEED, epoch=4)
    d = train_missingness(valid, s, SEED + 1, epoch=3)
    for m in MODALITIES:
        assert torch.equal(a.observed[m], b.observed[m])
    if kind == "noise":
        assert torch.equal(a.noise_std, b.noise_std)
        assert not torch.equal(a.noise_std, c.noise_std) and not torch.equal(a.noise_std, d.noise_std)
    else:
        assert any(not torch.equal(a.observed[m], c.observed[m]) for m in MODALITIES)
        assert any(not torch.equal(a.observed[m], d.observed[m]) for m in MODALITIES)


def test_masks_do_not_depend_on_split_size(valid):
    """Sample i's mask depends on i and the seed only (counter-based draws), for intra and burst."""
    head = {m: v[:100] for m, v in valid.items()}
    for kind in ("intra", "burst"):
        full = eval_missingness(valid, scen(kind), 0.4, SEED).observed
        part = eval_missingness(head, scen(kind), 0.4, SEED).observed
        for m in MODALITIES:
            assert torch.equal(full[m][:100], part[m])


def test_blocked_computation_matches_whole(valid, monkeypatch):
    """Row/frame blocks (a CPU cache optimisation) must not change a single value."""
    import raymsa.missing.masks as masks_mod
    import raymsa.missing.rng as rng_mod

    idx = torch.arange(40)
    batch = make_batch(valid, idx)
    noise = eval_missingness(valid, scen("noise"), 0.5, SEED)
    ref = {k: eval_missingness(valid, scen(k), 0.5, SEED).observed for k in ("intra", "burst")}
    ref_noise = apply_missingness(batch, noise, idx)
    for mod in (rng_mod, masks_mod):
        monkeypatch.setattr(mod, "block_elements", lambda device: 333)  # not a multiple of any width
    for k in ("intra", "burst"):
        got = eval_missingness(valid, scen(k), 0.5, SEED).observed
        assert all(torch.equal(got[m], ref[k][m]) for m in MODALITIES), k
    got_noise = apply_missingness(batch, noise, idx)
    assert all(torch.equal(got_noise.features(m), ref_noise.features(m)) for m in MODALITIES)


# ---------------------------------------------------------------------------------------------
# training samplers


def test_train_intra_complete_fraction_and_rates():
    valid = {m: torch.ones(4000, 100, dtype=torch.bool) for m in MODALITIES}
    s = scen("intra", train_max_rate=0.8, train_complete_fraction=0.3)
    miss = train_missingness(valid, s, SEED, epoch=0)
    frac = torch.stack([1 - miss.observed[m].float().mean(1) for m in MODALITIES], 1)  # (N, 3) erased
    complete = (frac == 0).all(1)
    assert abs(complete.float().mean().item() - 0.3) < four_sigma(0.3, 4000) + 0.002
    rates = frac[~complete]  # per sample & modality ~ U(0, 0.8) plus binomial noise
    assert rates.max().item() < 0.8 + 0.2
    assert abs(rates.mean().item() - 0.4) < 0.02
    assert abs((rates < 0.2).float().mean().item() - 0.25) < 0.03
    # modalities draw independent rates and independent uniforms: with one shared stream per
    # sample, one modality's kept set would always contain the other's
    assert abs(torch.corrcoef(rates.T)[0, 1].item()) < 0.1
    t, a = miss.observed["text"][~complete], miss.observed["audio"][~complete]
    nested = ((t & ~a).sum(1) == 0) | ((a & ~t).sum(1) == 0)
    assert nested.float().mean().item() < 0.2


def test_train_inter_counts():
    valid = {m: torch.ones(6000, 4, dtype=torch.bool) for m in MODALITIES}
    miss = train_missingness(valid, scen("inter", train_complete_fraction=0.2), SEED, epoch=1)
    k = sum((~miss.observed[m].any(1)).long() for m in MODALITIES)  # (N,) missing modalities
    assert k.max().item() <= 2
    n = 6000
    # P(k=0) = 0.2 + 0.8/4, P(k=1) = 0.8/2, P(k=2) = 0.8/4 for rates ~ U(0, 2/3)
    for value, p in [(0, 0.4), (1, 0.4), (2, 0.2)]:
        assert abs((k == value).float().mean().item() - p) < four_sigma(p, n), value


def test_train_subset_and_noise_samplers():
    valid = {m: torch.ones(7000, 3, dtype=torch.bool) for m in MODALITIES}
    miss = train_missingness(valid, scen("subset"), SEED, epoch=0)
    has = torch.stack([miss.observed[m].any(1) for m in MODALITIES], 1)  # (N, 3)
    for s in SUBSETS:
        want = torch.tensor([any(SHORT[c] == m for c in s) for m in MODALITIES])
        p = 0.5 + 0.5 / 7 if s == "lav" else 0.5 / 7
        assert abs((has == want).all(1).float().mean().item() - p) < four_sigma(p, 7000), s
    noise = train_missingness(valid, scen("noise", train_max_rate=0.6), SEED, epoch=0)
    std = noise.noise_std
    assert abs((std == 0).float().mean().item() - 0.5) < four_sigma(0.5, 7000)
    assert std.max().item() <= 0.6 and abs(std[std > 0].mean().item() - 0.3) < 0.02


def test_train_burst_and_mixed_rates_bounded():
    valid = {m: torch.ones(2000, 50, dtype=torch.bool) for m in MODALITIES}
    b = train_missingness(valid, scen("burst", train_max_rate=0.5), SEED, epoch=2)
    for m in MODALITIES:
        assert (1 - b.observed[m].float().mean(1)).max().item() <= 0.5 + 1 / 50
    # frame rates <= 0.5 cannot erase all 50 frames, so only whole-modality drops remove a row
    mixed = train_missingness(valid, scen("mixed", train_max_rate=0.5), SEED, epoch=2)
    rows = torch.stack([mixed.observed[m].any(1) for m in MODALITIES], 1)
    assert rows.any(1).all()  # never all three modalities dropped
    assert (~rows).any()  # but whole modalities do go


# ---------------------------------------------------------------------------------------------
# apply_missingness


def make_batch(valid, idx, generator_seed=1, with_ids=True):
    g = torch.Generator().manual_seed(generator_seed)
    b = idx.shape[0]
    v = {m: valid[m][idx] for m in MODALITIES}
    feats = {m: torch.randn(b, T[m], D[m], generator=g) * v[m][..., None] for m in MODALITIES}
    text_ids = None
    if with_ids:
        att = v["text"].long()  # (B, T)
        ids = torch.randint(1000, 30000, (b, T["text"]), generator=g) * att
        ids[:, 0] = 101  # [CLS]
        ids[torch.arange(b), att.sum(1) - 1] = 102  # [SEP]
        text_ids = torch.stack([ids, att, torch.zeros_like(ids)], dim=1)  # (B, 3, T)
    return Batch(
        text=feats["text"], audio=feats["audio"], vision=feats["vision"], valid=v,
        observed={m: x.clone() for m, x in v.items()}, labels=torch.randn(b, generator=g),
        text_ids=text_ids, index=idx,
    )


def snapshot(batch):
    return [t.clone() for t in (batch.text, batch.audio, batch.vision, batch.labels, batch.text_ids)] + [
        batch.observed[m].clone() for m in MODALITIES
    ]


def test_apply_zeroes_exactly_the_unobserved(valid):
    idx = torch.randperm(N, generator=torch.Generator().manual_seed(5))[:64]
    batch = make_batch(valid, idx)
    before = snapshot(batch)
    miss = eval_missingness(valid, scen("intra"), 0.5, SEED)
    out = apply_missingness(batch, miss, idx)
    for m in MODALITIES:
        obs = miss.observed[m][idx]
        assert torch.equal(out.observed[m], obs)
        x, y = batch.features(m), out.features(m)
        assert torch.equal(y[obs], x[obs])  # untouched where observed
        assert (y[~obs] == 0).all()  # zero everywhere else
    # integrity from Batch matches the mask statistics
    expect = torch.stack([(miss.observed[m][idx].sum(1) / valid[m][idx].sum(1)) for m in MODALITIES], 1)
    assert torch.allclose(out.integrity, expect)
    assert out.complete is batch and out.complete.complete is None
    assert torch.equal(out.labels, batch.labels) and torch.equal(out.index, idx)
    for a, b in zip(before, snapshot(batch)):  # input not modified in place
        assert torch.equal(a, b)


def test_apply_text_ids_unk_keeps_cls_sep_and_mask(valid):
    idx = torch.arange(200)
    batch = make_batch(valid, idx)
    miss = eval_missingness(valid, scen("intra"), 0.9, SEED)
    out = apply_missingness(batch, miss, idx)
    ids_in, ids_out = batch.text_ids[:, 0], out.text_ids[:, 0]
    att = batch.text_ids[:, 1].bool()
    last = att.sum(1) - 1
    rows = torch.arange(200)
    assert (ids_out[:, 0] == 101).all() and (ids_out[rows, last] == 102).all()
    assert torch.equal(out.text_ids[:, 1:], batch.text_ids[:, 1:])  # attention mask and segments
    obs = miss.observed["text"][idx]
    special = torch.zeros_like(att)
    special[:, 0] = True
    special[rows, last] = True
    erased = att & ~obs & ~special
    assert erased.any()
    assert (ids_out[erased] == UNK_ID).all()
    assert torch.equal(ids_out[~erased], ids_in[~erased])  # observed tokens and padding unchanged
    # text features: every valid position may be erased, [CLS] included (no leak through its row)
    assert (~obs[:, 0]).any() and (out.text[~obs[:, 0], 0] == 0).all()


def test_apply_is_batch_order_independent(valid):
    idx = torch.randperm(N, generator=torch.Generator().manual_seed(2))[:48]
    batch = make_batch(valid, idx)
    for kind in ("intra", "burst", "mixed"):
        miss = eval_missingness(valid, scen(kind), 0.4, SEED)
        whole = apply_missingness(batch, miss, idx)
        perm = torch.randperm(48, generator=torch.Generator().manual_seed(3))
        sub = make_batch(valid, idx[perm])
        sub.text, sub.audio, sub.vision = batch.text[perm], batch.audio[perm], batch.vision[perm]
        sub.text_ids = batch.text_ids[perm]
        part = apply_missingness(sub, miss, idx[perm])
        for m in MODALITIES:
            assert torch.equal(part.features(m), whole.features(m)[perm])
            assert torch.equal(part.observed[m], whole.observed[m][perm])


def test_apply_noise(valid):
    idx = torch.arange(256)
    batch = make_batch(valid, idx)
    scale = {m: feature_std(batch.features(m), batch.valid[m]) for m in MODALITIES}
    zero = dataclasses.replace(eval_missingness(valid, scen("noise"), 0.0, SEED), noise_scale=scale)
    out0 = apply_missingness(batch, zero, idx)
    for m in MODALITIES:
        assert torch.equal(out0.features(m), batch.features(m))
    miss = dataclasses.replace(eval_missingness(valid, scen("noise"), 0.5, SEED), noise_scale=scale)
    out = apply_missingness(batch, miss, idx)
    for m in MODALITIES:
        diff = out.features(m) - batch.features(m)
        v = batch.valid[m]
        assert (diff[~v] == 0).all()  # padding stays zero
        rel = diff[v] / scale[m]  # (n, D) should be N(0, 0.5^2)
        assert abs(rel.std().item() - 0.5) < 0.02 and abs(rel.mean().item()) < 0.02
        assert torch.equal(out.observed[m], v)
    assert torch.equal(out.text_ids, batch.text_ids)  # ids carry no noise
    # noise is a function of (seed, sample, position, feature): the same in any batch
    first = make_batch(valid, idx[:100])
    first.text, first.audio, first.vision = batch.text[:100], batch.audio[:100], batch.vision[:100]
    half = apply_missingness(first, miss, idx[:100])
    for m in MODALITIES:
        assert torch.equal(half.features(m), out.features(m)[:100])


def test_apply_rejects_bad_index(valid):
    idx = torch.arange(8)
    miss = eval_missingness(valid, scen("intra"), 0.2, SEED)
    with pytest.raises(ValueError, match="index"):
        apply_missingness(make_batch(valid, idx), miss, torch.arange(9))


def test_on_the_input_device():
    meta = make_valid(n=16, device="meta")
    for kind in KINDS:
        s = scen(kind)
        miss = eval_missingness(meta, s, s.levels[1], SEED)
        assert all(o.device.type == "meta" for o in miss.observed.values())
        assert train_missingness(meta, s, SEED, 0).observed["audio"].device.type == "meta"


def test_missing_stats(valid):
    miss = eval_missingness(valid, scen("inter"), 0.2, SEED)
    st = missing_stats(valid, miss)
    assert abs(st["modality_rate"] - 0.2) < 1e-3
    assert set(st) == {"frame_text", "frame_audio", "frame_vision", "modality_rate"}


# ---------------------------------------------------------------------------------------------
# ScenarioConfig


def test_scenario_defaults_and_label():
    assert scen("intra").levels == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert scen("burst").levels == scen("noise").levels == scen("mixed").levels == scen("intra").levels
    assert scen("inter").levels == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert scen("subset").levels == list(SUBSETS)
    assert scen("intra").label == "intra" and scen("intra", name="frames").label == "frames"
    assert scen("subset", levels=["vl", "al", "l"]).levels == ["lv", "la", "l"]
    s = scen("intra", levels=[0.2])
    s.levels = None
    assert s.levels == scen("intra").levels
    assert scen("intra").level_label(0.3) == "0.3" and scen("subset").level_label("al") == "la"


@pytest.mark.parametrize(
    "data, key",
    [
        ({"kind": "inter", "levels": [0.0, 0.7]}, "levels"),
        ({"kind": "intra", "levels": [0.1, 1.5]}, "levels"),
        ({"kind": "intra", "levels": [0.5, 0.1]}, "levels"),
        ({"kind": "intra", "levels": []}, "levels"),
        ({"kind": "intra", "levels": ["la"]}, "levels"),
        ({"kind": "subset", "levels": ["x"]}, "levels"),
        ({"kind": "subset", "levels": [0.1]}, "levels"),
        ({"kind": "noise", "levels": [-0.1]}, "levels"),
        ({"kind": "mixed", "mixed_inter_ratio": 1.0}, "mixed_inter_ratio"),
        ({"kind": "mixed", "mixed_inter_ratio": 0.7, "levels": [0.5]}, "train_max_rate"),
        ({"kind": "intra", "train_max_rate": 1.2}, "train_max_rate"),
        ({"kind": "intra", "train_complete_fraction": -0.1}, "train_complete_fraction"),
        ({"kind": "holes"}, "kind"),
        ({"kind": "intra", "rate": 0.3}, "rate"),
        ({"kind": "intra", "name": " "}, "name"),
    ],
)
def test_scenario_validation_errors(data, key):
    with pytest.raises(ConfigError, match=rf"study\.yaml: {key}"):
        parse(ScenarioConfig, data, "study.yaml")


def test_level_value_checks():
    with pytest.raises(ValueError):
        scen("intra").level_value(1.2)
    with pytest.raises(ValueError):
        scen("subset").level_value("q")
    with pytest.raises(ValueError):
        scen("mixed").level_value("0.3")
    assert scen("noise").level_value(2) == 2.0
