"""QK-Clip: the max-logit capture (exact against a direct float64 computation; the wrapped attention returns what
the model's own implementation returns), the clip against the float64 reference, the post-step bound with a tiny
τ on every clipped head, untouched heads and non-Muon weights left bit-identical, gradient accumulation, lr = 0,
stats; the multi-process max is a slow test."""

import copy
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, child_env, free_port, tiny_gpt2, tiny_llama

import hf_muon
from hf_muon.model.logits import max_logits
from hf_muon.optim.qk_clip import clip_site_
from hf_muon.optim.variants.reference import reference_qk_clip


def _direct(q, k, keep):
    """max over (b, i, j visible) of q_h·k_{h//G} / √D in float64, per query head."""
    B, H, S, D = q.shape
    G = H // k.shape[1]
    out = torch.full((H,), float("-inf"), dtype=torch.float64)
    for h in range(H):
        s = q[:, h].double() @ k[:, h // G].double().transpose(-1, -2) / D**0.5
        out[h] = s.masked_fill(
            ~keep[:, 0] if keep is not None else torch.zeros_like(s, dtype=torch.bool), float("-inf")
        ).max()
    return out


@pytest.mark.parametrize("mask_kind", ["causal", "bool", "additive", "padding_2d"])
def test_max_logits_equal_a_direct_float64_computation(mask_kind, monkeypatch):
    import hf_muon.model.logits as L

    monkeypatch.setattr(L, "CHUNK", 64)  # several query chunks
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 4, 6, 8, generator=g), torch.randn(2, 2, 6, 8, generator=g)
    causal = torch.tril(torch.ones(6, 6, dtype=torch.bool))[None, None].expand(2, 1, 6, 6).clone()
    pad = torch.ones(2, 6, dtype=torch.bool)
    pad[0, :2] = False
    keep = causal & pad[:, None, None, :] if mask_kind == "padding_2d" else causal.clone()
    if mask_kind == "bool":
        keep[1, 0, 3, :] = False
        keep[1, 0, 3, 0] = True
    mask = {
        "causal": None,
        "bool": keep,
        "additive": torch.where(keep, 0.0, torch.finfo(torch.float32).min),
        "padding_2d": pad.long(),
    }[mask_kind]
    got = max_logits(q, k, mask, 8**-0.5, causal=True)
    assert torch.allclose(got.double(), _direct(q, k, keep), atol=1e-5)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_the_wrapped_attention_returns_what_the_models_own_does(impl, monkeypatch):
    """Outputs and gradients bit-identical to the plain implementation; Llama-style eager pays no extra q·kᵀ."""
    import hf_muon.model.logits as L

    calls = []
    real = L.max_logits
    monkeypatch.setattr(L, "max_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = tiny_llama()
    model.set_attn_implementation(impl)
    twin = copy.deepcopy(model)
    opt = hf_muon.create_optimizer(model, lr=1e-3, qk_clip=100.0)
    assert model.config._attn_implementation == f"hf_muon_qk_clip_{impl}"
    x = torch.randint(0, 128, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :3] = 0
    a = model(input_ids=x, attention_mask=mask, labels=x).loss
    b = twin(input_ids=x, attention_mask=mask, labels=x).loss
    a.backward(), b.backward()
    assert torch.equal(a, b)
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p.grad, q.grad)
    assert all(v is not None and v.shape == (4,) for v in opt.qk_clip.logits.values)
    assert (len(calls) == 0) == (impl == "eager")
    opt.qk_clip.remove()
    assert model.config._attn_implementation == impl


def test_eval_forwards_are_not_captured():
    model = tiny_llama()
    opt = hf_muon.create_optimizer(model, lr=1e-3, qk_clip=1.0)
    model.eval()
    model(input_ids=torch.randint(0, 128, (1, 8)))
    assert opt.qk_clip.logits.values == [None, None]


def test_clip_site_equals_the_float64_reference_for_gqa():
    model = tiny_llama()
    site = hf_muon.model.heads.attention_sites(model)[0]
    wq, wk = site.q.weight.detach().clone(), site.k.weight.detach().clone()
    S = torch.tensor([0.5, 3.0, 1.5, 0.9])  # τ = 1: heads 1 and 2 clipped; kv 0 by head 1, kv 1 by head 2
    assert clip_site_(site, S, 1.0) == 2
    rq, rk = reference_qk_clip(wq, wk, S, 1.0, heads=4, kv_heads=2, head_dim=8)
    assert torch.allclose(site.q.weight.double(), rq, atol=1e-7) and torch.allclose(
        site.k.weight.double(), rk, atol=1e-7
    )
    assert torch.equal(site.q.weight[:8], wq[:8]) and torch.equal(site.q.weight[24:], wq[24:])


def _step(model, opt, x):
    torch.manual_seed(0)  # the same dropout masks for a model and its twin
    model.train()
    model(input_ids=x, labels=x).loss.backward()
    opt.step()
    opt.zero_grad()


def _post_step_max(model, opt, x):
    with torch.no_grad():
        model(input_ids=x)
    return torch.stack(opt.qk_clip.logits.take())


@pytest.mark.parametrize("make", ["llama", "phi3"])
def test_tiny_tau_bounds_the_post_step_max_logit_of_every_clipped_head(make):
    from transformers import Phi3Config, Phi3ForCausalLM

    model = (
        tiny_llama()
        if make == "llama"
        else Phi3ForCausalLM(
            Phi3Config(
                vocab_size=128,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                pad_token_id=0,
                bos_token_id=0,
                eos_token_id=1,
            )
        )
    )
    x = torch.randint(0, 128, (3, 16))
    probe = hf_muon.create_optimizer(copy.deepcopy(model), lr=1e-4, qk_clip=1e6)
    tau = 0.5 * float(_post_step_max(probe.qk_clip.logits.model, probe, x).min())  # below every head's max
    opt = hf_muon.create_optimizer(model, lr=1e-4, qk_clip=tau)
    _step(model, opt, x)
    assert opt.qk_clip.last["qk_clip_heads_clipped"] == opt.qk_clip.last["qk_clip_heads"] == 8
    after = _post_step_max(model, opt, x)
    assert float(after.max()) <= tau * 1.01


def test_untouched_heads_and_non_muon_weights_stay_bit_identical():
    """A twin without QK-Clip takes the same step: only the clipped heads' q rows and their kv heads' k rows differ;
    a layer whose k_proj is on AdamW (exclude) is not watched and never scaled."""
    model = tiny_llama()
    twin = copy.deepcopy(model)
    x = torch.randint(0, 128, (3, 16))
    cfg = dict(lr=1e-4, exclude=r"layers\.1\.self_attn\.k_proj")
    probe = hf_muon.create_optimizer(copy.deepcopy(model), qk_clip=1e6, **cfg)
    S = _post_step_max(probe.qk_clip.logits.model, probe, x)[0]
    assert len(probe.qk_clip.sites) == 1  # layer 1 is not watched: its k_proj is AdamW's
    top, second = S.topk(2).values.tolist()
    h = int(S.argmax())  # clip that head only; it shares kv head h // 2 with one other q head
    tau = (top + second) / 2
    opt = hf_muon.create_optimizer(model, qk_clip=tau, **cfg)
    ref = hf_muon.create_optimizer(twin, **cfg)
    _step(model, opt, x), _step(twin, ref, x)
    assert opt.qk_clip.last["qk_clip_heads_clipped"] == 1
    changed = {n for (n, p), q in zip(model.named_parameters(), twin.parameters()) if not torch.equal(p, q)}
    assert changed == {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight"}
    wq, wk = model.model.layers[0].self_attn.q_proj.weight, model.model.layers[0].self_attn.k_proj.weight
    tq, tk = twin.model.layers[0].self_attn.q_proj.weight, twin.model.layers[0].self_attn.k_proj.weight
    for head in range(4):
        rows = slice(8 * head, 8 * head + 8)
        assert torch.equal(wq[rows], tq[rows]) == (head != h)
    kv = slice(8 * (h // 2), 8 * (h // 2) + 8)
    other = slice(8 * (1 - h // 2), 8 * (1 - h // 2) + 8)
    assert torch.equal(wk[other], tk[other])  # the other kv head is untouched
    gamma = tau / top
    assert torch.allclose(wq[8 * h : 8 * h + 8], tq[8 * h : 8 * h + 8] * gamma**0.5)
    assert torch.allclose(wk[kv], tk[kv] * gamma**0.5)


def test_biases_of_biased_qk_projections_are_never_scaled():
    model = tiny_gpt2()  # c_attn (Conv1D) with a bias on AdamW
    twin = copy.deepcopy(model)
    x = torch.randint(0, 128, (2, 16))
    opt = hf_muon.create_optimizer(model, lr=1e-4, qk_clip=1e-6)
    ref = hf_muon.create_optimizer(twin, lr=1e-4)
    _step(model, opt, x), _step(twin, ref, x)
    assert opt.qk_clip.last["qk_clip_heads_clipped"] == 8
    for (n, p), q in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(p, q) == ("c_attn.weight" not in n), n


def test_max_over_micro_batches_then_reset_and_lr_zero_clips_nothing():
    model = tiny_llama()
    opt = hf_muon.create_optimizer(model, lr=0.0, qk_clip=1e-6)
    xs = [torch.randint(0, 128, (1, 16)) for _ in range(2)]
    seen = []
    for x in xs:  # two micro-batches of one accumulation window
        model(input_ids=x, labels=x).loss.backward()
        seen.append(torch.stack([v.clone() for v in opt.qk_clip.logits.values]))
    both = torch.stack(opt.qk_clip.logits.values)
    assert torch.equal(both, torch.maximum(*seen))
    before = copy.deepcopy(model.state_dict())
    opt.step()  # lr = 0 (DCP's fake step): nothing clipped, the maxima are kept for the next step
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.stack(opt.qk_clip.logits.values), both)
    for g in opt.param_groups:
        g["lr"] = 1e-4
    opt.track_stats = "light"
    opt.step()
    assert opt.qk_clip.logits.values == [None, None]
    assert opt.last_stats["qk_clip_heads_clipped"] == 8 and opt.last_stats["qk_clip_heads"] == 8
    assert opt.last_stats["qk_clip_max_logit"] == pytest.approx(float(both.max()))


def test_no_watched_head_is_an_error():
    with pytest.raises(ValueError, match="no attention module of this model has both its q and k weights on Muon"):
        hf_muon.create_optimizer(tiny_llama(), qk_clip=1.0, exclude="k_proj")


@pytest.mark.slow
def test_ranks_share_the_max_and_clip_identically(tmp_path):
    """Two gloo ranks see different batches: the clip uses the max over both, weights stay equal across ranks, and a
    row-sharded DTensor weight is scaled as the full one."""
    env = child_env()
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "torchrun"),
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        str(REPO / "tests" / "scripts" / "qk_clip_dist.py"),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert torch.equal(r0["S"], r1["S"]) and torch.equal(r0["S"], torch.maximum(r0["local"], r1["local"]))
    assert r0["clipped"] == r1["clipped"] > 0
    for a, b in zip(r0["weights"], r1["weights"]):
        assert torch.equal(a, b)
    assert r0["dtensor_ok"] and r1["dtensor_ok"]
