"""Every update rule in the situations users run it in (issue 26): 5 steps of each rule on (a) a LoRA r=16 model
under the default policy (lora_B starts at zero, so every lora_A gradient of step 1 is exactly zero), (b) a
Qwen3-MoE with top-1 routing and a batch of two tokens, which leaves experts idle, (c) a bf16 model with fp32
momentum. Every weight and state stays finite and the loss falls."""

import warnings

import pytest
import torch
from conftest import tiny_llama, tiny_qwen3_moe

import hf_muon

RULES = {
    "muon": {},
    "normuon": dict(variant="normuon"),
    "adamuon": dict(variant="adamuon"),
    "adam_base": dict(update_base="adam"),
    "spectral_half": dict(spectral_power=0.5),
    "cautious_wd": dict(cautious_wd=True, weight_decay=0.1),
    "per_head": dict(per_head=True),
    "qk_clip": dict(qk_clip=50.0),
}


def _lora():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    return get_peft_model(
        tiny_llama(), LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    )


def _moe():
    torch.manual_seed(0)
    model = tiny_qwen3_moe()
    model.config.num_experts_per_tok = 1
    for mod in model.modules():
        if hasattr(mod, "top_k"):
            mod.top_k = 1
    return model


def _bf16():
    torch.manual_seed(0)
    return tiny_llama().to(torch.bfloat16)


# QK-Clip cannot serve these, and says so before training: LoRA freezes the q/k base weights, Qwen3 normalizes q/k
REFUSED = {
    ("qk_clip", "lora_r16"): "no attention module of this model has both its q and k weights on Muon",
    ("qk_clip", "moe_top1_idle"): "normalizes q/k after the projection",
}

SITUATIONS = {
    "lora_r16": (_lora, {}, 16),
    "moe_top1_idle": (_moe, {}, 2),
    "bf16_fp32_momentum": (_bf16, dict(momentum_dtype="float32"), 16),
}


@pytest.mark.parametrize("situation", SITUATIONS)
@pytest.mark.parametrize("rule", RULES)
def test_five_steps_stay_finite_and_the_loss_falls(rule, situation):
    make, extra, tokens = SITUATIONS[situation]
    model = make()
    x = torch.randint(0, 128, (1, tokens), generator=torch.Generator().manual_seed(1))
    knobs = dict(lr=1e-2, **RULES[rule], **extra)
    refusal = REFUSED.get((rule, situation))
    if refusal:
        with pytest.raises(ValueError, match=refusal):
            hf_muon.create_optimizer(model, **knobs)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        opt = hf_muon.create_optimizer(model, **knobs)
    losses = []
    for step in range(5):
        loss = model(input_ids=x, labels=x).loss
        losses.append(float(loss))
        loss.backward()
        if step == 0 and situation == "lora_r16":
            assert any(
                n.endswith("lora_A.default.weight") and float(p.grad.abs().max()) == 0
                for n, p in model.named_parameters()
                if p.grad is not None
            )
        if step == 0 and situation == "moe_top1_idle":
            stacks = [p for n, p in model.named_parameters() if "experts" in n and p.ndim == 3]
            assert any(float(p.grad[e].abs().max()) == 0 for p in stacks for e in range(p.shape[0]))
        opt.step()
        opt.zero_grad()
    for n, p in model.named_parameters():
        assert torch.isfinite(p).all(), n
    for st in opt.state.values():
        for k, v in st.items():
            assert torch.isfinite(v).all(), k
    assert losses[-1] < losses[0], losses
