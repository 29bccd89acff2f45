"""The field's references built from their public code (LNLN: github Haoyu-ha/LNLN; MulT: thuiar/MMSA's
MULT.py, from yaohungt/Multimodal-Transformer): at their public MOSI configurations and MMSA's MOSI
feature dims (text 768 x 50, audio 5 x 375, vision 20 x 500) the parameter count equals the count of
the public layer definitions, worked out below from those definitions (BERT excluded: text arrives
as the same 768-dim features the public code would get from its BERT), and the inner outputs have
the public shapes."""

from __future__ import annotations

import pytest
import torch

from raymsa.batch import MODALITIES, Batch
from raymsa.models import DataSpec, build_model

MOSI = DataSpec(dims={"text": 768, "audio": 5, "vision": 20}, seq_lens={"text": 50, "audio": 375, "vision": 500})


def linear(i: int, o: int, bias: bool = True) -> int:
    return i * o + (o if bias else 0)


def ln(d: int) -> int:
    return 2 * d


# ---- LNLN: models/basic_layers.py + models/lnln.py at configs/train_mosi.yaml ---------------------
# d = hidden_dims = 128, heads 8, dim_head 64 (Transformer's default) -> inner 512, mlp_dim 128, depth 2

def lnln_public_params(d: int = 128, inner: int = 512, mlp: int = 128, depth: int = 2, k: int = 8) -> int:
    attention = 3 * linear(d, inner, bias=False) + linear(inner, d)  # to_q, to_k, to_v, to_out
    layer = 3 * ln(d) + attention + ln(d) + linear(d, mlp) + linear(mlp, d)  # PreNorm_qkv + PreNorm(FeedForward)
    encoder = depth * layer

    def transformer(n_frames: int, token_len: int) -> int:  # pos_embedding + extra_token + encoder
        return (n_frames + token_len) * d + token_len * d + encoder

    proj = (linear(768, d) + transformer(50, k)) + (linear(20, d) + transformer(500, k)) \
        + (linear(5, d) + transformer(375, k))                    # proj_l, proj_v, proj_a
    proxy = transformer(3 * k, k)                                  # proxy_dominate_modality_generator (24 frames)
    discriminator = linear(d, 64) + linear(64, 2)                  # effective_discriminator
    check = transformer(k, 1) + linear(d, d // 2) + linear(d // 2, 1)  # completeness_check[0], [1]
    reconstructor = 3 * transformer(k, 0)
    language = transformer(k, 0)                                   # dmml[0]
    hyper_layer = 4 * ln(d) + 5 * linear(d, inner, bias=False) + linear(inner, d)  # PreNorm_hyper + HhyperLearningLayer
    hyper = (depth + 1) * hyper_layer                              # dmml[1], depth 3
    fusion = 2 * (k + 1) * d + d + encoder                         # dmml[2]: pos_s, pos_t, extra_token, encoder
    regression = linear(d, 1)                                      # dmml[3]
    tokens = 2 * k * d                                             # h_hyper, h_p
    return proj + proxy + discriminator + check + reconstructor + language + hyper + fusion + regression + tokens


# ---- MulT: MMSA MULT.py + transformers_encoder/ at config_regression.json "mult"/"mosi" ------------
# d = 50, nlevels 4, conv kernels 5 (no bias), memories 2d with max(nlevels, 3) = 4 layers

def mult_public_params(d: int = 50, levels: int = 4, kernel: int = 5) -> int:
    def layer(e: int) -> int:  # in_proj (3e x e + 3e), out_proj, fc1 (4e), fc2, 2 LayerNorms
        return linear(e, 3 * e) + linear(e, e) + linear(e, 4 * e) + linear(4 * e, e) + 2 * ln(e)

    def encoder(e: int, n: int) -> int:  # layers + final LayerNorm; sinusoidal positions have no weights
        return n * layer(e) + ln(e)

    conv = kernel * d * (768 + 5 + 20)  # proj_l, proj_a, proj_v: Conv1d without bias
    cross = 6 * encoder(d, levels)
    mem = 3 * encoder(2 * d, max(levels, 3))
    head = 2 * linear(6 * d, 6 * d) + linear(6 * d, 1)  # proj1, proj2, out_layer
    return conv + cross + mem + head


def test_public_arithmetic_figures():
    # the figures the arithmetic gives, written out so that a change to it shows
    assert lnln_public_params() == 7_367_748
    assert mult_public_params() == 2_571_551


@pytest.mark.parametrize("name, public", [("lnln", lnln_public_params), ("mult", mult_public_params)])
def test_parameter_count_at_mosi_equals_the_public_architecture(name, public):
    model = build_model(name, spec=MOSI)
    assert sum(p.numel() for p in model.parameters()) == public()


# the forward runs on shorter sequences than MOSI's (a model built for 500 frames takes fewer; the
# full lengths cost about a minute on a loaded 2-core machine): 50 text tokens, 40 audio, 60 vision
SHORT = {"text": 50, "audio": 40, "vision": 60}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _batch(b: int = 2) -> Batch:
    g = torch.Generator().manual_seed(0)
    feats, valid = {}, {}
    for m in MODALITIES:
        t, d = SHORT[m], MOSI.dims[m]
        valid[m] = torch.arange(t) < torch.tensor([t, t // 3]).unsqueeze(1)
        feats[m] = torch.randn(b, t, d, generator=g) * valid[m].unsqueeze(-1)
    obs = {m: valid[m] & (torch.rand(valid[m].shape, generator=g) > 0.3) for m in MODALITIES}
    complete = Batch(**feats, valid=valid, observed=dict(valid), labels=torch.zeros(b))
    return Batch(**{m: feats[m] * obs[m].unsqueeze(-1) for m in MODALITIES}, valid=valid, observed=obs,
                 labels=torch.zeros(b), complete=complete)


def test_lnln_shapes_at_mosi():
    torch.manual_seed(0)
    model = build_model("lnln", spec=MOSI).train()
    batch = _batch()
    inputs, targets = batch.split()
    h = model.tokens(inputs)
    assert all(h[m].shape == (2, 8, 128) for m in MODALITIES)  # proj_*(x)[:, :8]
    p = model.parts(inputs, h)
    assert p["w_hat"].shape == (2, 1) and p["proxy"].shape == (2, 8, 128) and p["h_d"].shape == (2, 8, 128)
    assert p["hyper"].shape == (2, 8, 128) and p["fused"].shape == (2, 128)
    out = model(inputs, targets)
    assert out["pred"].shape == (2,) and set(out["losses"]) == {"cc", "adv", "rec"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in out["losses"].values())


def test_mult_shapes_at_mosi():
    torch.manual_seed(0)
    model = build_model("mult", spec=MOSI).eval()
    inputs = _batch().model_input()
    # Conv1d with kernel 5 and no padding: T -> T - 4 steps (MOSI: 50 -> 46, 375 -> 371, 500 -> 496)
    assert [model.encoders(inputs, m)[0].shape[1] for m in MODALITIES] == [46, 36, 56]
    assert [model.encoders.out_len(m, MOSI.seq_lens[m]) for m in MODALITIES] == [46, 371, 496]
    with torch.no_grad():
        assert model.features(inputs).shape == (2, 300)  # combined_dim = 2 (d_l + d_a + d_v)
        assert model(inputs)["pred"].shape == (2,)


@pytest.mark.parametrize("public", [False, True])
def test_lnln_completeness_and_reversal_switches(public):
    """Default: the task loss reaches neither the completeness check (w detached) nor the proxy
    reversed; public settings: both, as in the public code."""
    from tests.test_models import make_batch, tiny

    fields = {"detach_completeness": False, "reverse_task_grad": True} if public else {}
    model = tiny("lnln", **fields).train()
    inputs, targets = make_batch(rate=0.5).split()
    out = model(inputs, targets)
    out["pred"].sum().backward()  # the task path only
    check_grad = sum(float(p.grad.abs().sum()) for p in model.check_head.parameters() if p.grad is not None)
    assert (check_grad > 0) == public
    proxy_grad = model.proxy.tokens.grad
    assert proxy_grad is not None and float(proxy_grad.abs().sum()) > 0
    # the same task gradient with and without the reversal differs in sign only
    model.zero_grad()
    twin = tiny("lnln", **{**fields, "reverse_task_grad": not fields.get("reverse_task_grad", False)}).train()
    twin.load_state_dict(model.state_dict())
    twin(inputs, targets)["pred"].sum().backward()
    g0 = proxy_grad
    assert torch.allclose(twin.proxy.tokens.grad, -g0, atol=1e-6)
