"""per_head: q/k/v (and fused QKV) split into head_dim blocks from the HF config, with GQA; a per-head step equals
the same step on each head as its own matrix; MLA and (for QK-Clip) q/k-norm models are refused."""

import pytest
import torch
from conftest import tiny_gpt2, tiny_llama, tiny_qwen3, tiny_qwen3_moe

import hf_muon
from hf_muon import Muon
from hf_muon.model.heads import attention_sites, heads_of


def _phi3():
    from transformers import Phi3Config, Phi3ForCausalLM

    return Phi3ForCausalLM(
        Phi3Config(
            vocab_size=128,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
            pad_token_id=0,
            bos_token_id=0,
            eos_token_id=1,
        )
    )


def _neox():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    return GPTNeoXForCausalLM(
        GPTNeoXConfig(
            vocab_size=128,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            bos_token_id=0,
            eos_token_id=1,
        )
    )


def _mla():
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    return DeepseekV3ForCausalLM(
        DeepseekV3Config(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            moe_intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=4,
            n_routed_experts=4,
            num_experts_per_tok=2,
            n_shared_experts=1,
            kv_lora_rank=8,
            q_lora_rank=8,
            qk_rope_head_dim=4,
            v_head_dim=8,
            qk_nope_head_dim=4,
            first_k_dense_replace=1,
        )
    )


def _splits(model, **kw):
    return {r.name.rsplit(".", 2)[-2]: r.split for r in hf_muon.route(model, per_head=True, **kw) if r.split}


@pytest.mark.parametrize(
    "make, want",
    [
        (tiny_llama, {"q_proj": (-2, 4), "k_proj": (-2, 2), "v_proj": (-2, 2)}),  # GQA 4 q / 2 kv heads of 8
        (_phi3, {"qkv_proj": (-2, 8)}),  # 4 q + 2 k + 2 v heads
        (_neox, {"query_key_value": (-2, 12)}),  # [q_h, k_h, v_h] per head
        (tiny_gpt2, {"c_attn": (-1, 12)}),  # Conv1D: heads in the columns
        (tiny_qwen3_moe, {"q_proj": (-2, 4), "k_proj": (-2, 2), "v_proj": (-2, 2)}),  # experts stay whole
    ],
)
def test_head_splits_come_from_the_config(make, want):
    model = make()
    got = {leaf: (s.axis, len(s.sizes)) for leaf, s in _splits(model).items()}
    assert got == want
    d = heads_of(model.config).head_dim
    assert all(set(s.sizes) == {d} and s.groups == 1 for s in _splits(model).values())


def test_per_head_replaces_the_qkv_split_but_split_fused_still_splits_gate_up():
    s = _splits(_phi3(), split_fused=True)
    assert len(s["qkv_proj"].sizes) == 8 and s["gate_up_proj"].sizes == (64, 64)


def test_a_per_head_step_equals_each_head_as_its_own_matrix():
    """Three steps on a (4·8, 32) q weight split per head == the same steps on four (8, 32) weights."""
    torch.manual_seed(0)
    q = torch.nn.Parameter(torch.randn(32, 32))
    heads = [torch.nn.Parameter(q.detach()[8 * h : 8 * (h + 1)].clone()) for h in range(4)]
    model = tiny_llama()
    split = next(r.split for r in hf_muon.route(model, per_head=True) if r.name.endswith("q_proj.weight"))
    kw = dict(lr=0.02, weight_decay=0.1, ns_dtype="float32", scale_mode="mup")
    opt = Muon([dict(params=[q], split=split.spec())], **kw)
    ref = Muon(heads, **kw)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        grad = torch.randn(32, 32, generator=g)
        q.grad = grad
        for h, p in enumerate(heads):
            p.grad = grad[8 * h : 8 * (h + 1)].clone()
        opt.step(), ref.step()
    assert torch.allclose(q.detach(), torch.cat([p.detach() for p in heads]), atol=1e-6)


def test_per_head_model_trains_and_differs_from_whole_matrix_muon():
    x = torch.randint(0, 128, (2, 16))
    out = []
    for per_head in (False, True):
        torch.manual_seed(0)
        model = tiny_llama()
        opt = hf_muon.create_optimizer(model, lr=1e-2, per_head=per_head)
        for _ in range(3):
            model(input_ids=x, labels=x).loss.backward()
            opt.step()
            opt.zero_grad()
        out.append(model.model.layers[0].self_attn.q_proj.weight.detach().clone())
    assert not torch.equal(*out)


def test_mla_is_refused_with_what_kimi_scales():
    model = _mla()
    with pytest.raises(ValueError, match="per_head: .*multi-head latent attention.*shared k_R"):
        hf_muon.route(model, per_head=True)
    with pytest.raises(ValueError, match="qk_clip: .*multi-head latent attention"):
        hf_muon.create_optimizer(model, qk_clip=10.0)
    assert hf_muon.route(model)  # without the head knobs it routes as before


def test_qk_norm_models_refuse_qk_clip_but_split_per_head():
    model = tiny_qwen3()
    with pytest.raises(ValueError, match=r"q_norm, k_norm.*QK-Clip would do nothing"):
        hf_muon.create_optimizer(model, qk_clip=10.0)
    assert _splits(model)["q_proj"].sizes == (8,) * 4


def test_attention_sites_index_each_heads_features():
    site = attention_sites(_neox())[0]  # rows per head: [q_h (8), k_h (8), v_h (8)]
    assert site.q.index[1].tolist() == list(range(24, 32)) and site.k.index[1].tolist() == list(range(32, 40))
    site = attention_sites(_phi3())[0]  # rows: 4 q heads, then 2 k heads, then 2 v heads
    assert site.k.index.shape == (2, 8) and site.k.index[0, 0] == 32
    site = attention_sites(tiny_gpt2())[0]  # columns of the (32, 96) Conv1D weight
    assert site.q.axis == -1 and site.k.index[0, 0] == 32
