"""Routing over every causal-LM architecture transformers ships (slow): each built tiny from its default config,
routed, one forward/backward and one optimizer step. Checked, for each:

* no embedding, norm or router parameter is on Muon (embeddings: ``nn.Embedding`` weights and the model's
  input/output embeddings; norms: parameters of modules whose class is a norm; routers: weights inside a module
  whose class is a router/gating/gate, or a Linear whose output size is the number of experts);
* no hidden projection is left on AdamW without a stated reason: every ≥2-D parameter the forward actually
  multiplies by (recorded from the matmul-family calls of a real forward, independently of how routing reads the
  code) is on Muon, or on AdamW as an embedding, tied weight, router, head outside the backbone or expert bias;
* the step leaves every weight finite.

Architectures whose default config cannot be shrunk to a tiny model, or whose own forward fails on plain
``input_ids``, are counted and listed (not failures of hf_muon); the test fails if fewer than 150 are checked."""

import time
import warnings

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import hf_muon

pytestmark = pytest.mark.slow

SMALL = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_layers=2,
    n_layer=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    n_head=4,
    n_embd=64,
    d_model=64,
    vocab_size=128,
    max_position_embeddings=64,
    moe_intermediate_size=32,
    num_experts=4,
    num_local_experts=4,
    n_routed_experts=4,
    head_dim=16,
    shared_expert_intermediate_size=64,
    ffn_hidden_size=128,
    d_ff=128,
    n_positions=64,
    encoder_layers=2,
    decoder_layers=2,
    encoder_ffn_dim=128,
    decoder_ffn_dim=128,
    num_decoder_layers=2,
    lru_width=64,
    kv_lora_rank=16,
    q_lora_rank=32,
    qk_rope_head_dim=8,
    qk_nope_head_dim=8,
    v_head_dim=16,
    num_experts_per_tok=2,
    moe_topk=2,
    top_k=2,
    n_group=1,
    topk_group=1,
    num_shared_experts=1,
    n_shared_experts=1,
    rotary_dim=8,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    num_heads=4,
)
MAX_PARAMS = 12_000_000
MATMULS = {
    "mm",
    "bmm",
    "matmul",
    "baddbmm",
    "addmm",
    "linear",
    "einsum",
    "__matmul__",
    "__rmatmul__",
    "addbmm",
}
ADAMW_REASONS = ("embedding", "tied", "MoE router", "head outside the backbone", "bias")


def tiny_config(model_type: str):
    from transformers import AutoConfig

    cfg = AutoConfig.for_model(model_type)
    subs = [getattr(cfg, k) for k in ("text_config", "decoder", "encoder") if hasattr(getattr(cfg, k, None), "to_dict")]
    for c in [cfg] + subs:
        for k, v in SMALL.items():
            cur = getattr(c, k, None)
            if isinstance(cur, int) and not isinstance(cur, bool) and cur > v:
                try:
                    setattr(c, k, v)
                except Exception:  # noqa: BLE001 -- a derived or validated field: keep the default
                    pass
        if isinstance(getattr(c, "qk_rope_head_dim", None), int) and hasattr(c, "head_dim"):
            try:  # MLA: the rotary part is the head_dim RoPE is built for
                c.head_dim = c.qk_rope_head_dim
            except Exception:  # noqa: BLE001
                pass
        vocab = getattr(c, "vocab_size", None)
        for k in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id", "sep_token_id"):
            cur = getattr(c, k, None)
            if isinstance(vocab, int) and isinstance(cur, int) and cur >= vocab:
                setattr(c, k, 0)
    return cfg


class _Products(TorchFunctionMode):
    """Storages of the tensors that take part in matmul-family calls."""

    def __init__(self):
        super().__init__()
        self.storages: set[int] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in MATMULS:
            # the matrix operands only: not the added input of baddbmm/addmm, not linear's bias
            operands = args[1:3] if name in ("baddbmm", "addmm", "addbmm") else args[:2] if name == "linear" else args
            for a in operands:
                for t in a if isinstance(a, (list, tuple)) else [a]:
                    if isinstance(t, torch.Tensor) and t.ndim >= 2:
                        self.storages.add(t.untyped_storage().data_ptr())
        return func(*args, **(kwargs or {}))


def _class_is_router(m: nn.Module) -> bool:
    c = type(m).__name__.lower()
    return "router" in c or "gating" in c or c.endswith("gate")


def _forbidden_on_muon(model) -> dict[int, str]:
    """id(param) -> why it must not be on Muon (checked independently of hf_muon.route)."""
    out: dict[int, str] = {}
    experts = next(
        (
            getattr(c, k)
            for c in [model.config, getattr(model.config, "text_config", None)]
            if c is not None
            for k in ("num_experts", "num_local_experts", "n_routed_experts")
            if isinstance(getattr(c, k, None), int)
        ),
        None,
    )
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        try:
            mod = getattr(model, getter)()
        except Exception:  # noqa: BLE001
            mod = None
        for p in mod.parameters() if isinstance(mod, nn.Module) else ():
            out[id(p)] = "embedding"
    routers = [n for n, m in model.named_modules() if n and _class_is_router(m)]
    for name, m in model.named_modules():
        for p in m.parameters(recurse=False):
            if isinstance(m, nn.Embedding):
                out[id(p)] = "embedding"
            elif "norm" in type(m).__name__.lower():
                out[id(p)] = "norm"
            elif any(name == r or name.startswith(r + ".") for r in routers) or (
                isinstance(m, nn.Linear)
                and experts
                and m.out_features == experts
                and name.rsplit(".", 1)[-1] in ("gate", "router", "wg", "gating")
            ):
                out[id(p)] = "router"
    return out


def _architectures() -> list[str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return list(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def _check(model_type: str) -> str | None:
    """None when checked; else why it could not be (not an hf_muon failure). Raises AssertionError on a finding."""
    from transformers import AutoModelForCausalLM

    try:
        cfg = tiny_config(model_type)
        with torch.device("meta"):
            n = sum(p.numel() for p in AutoModelForCausalLM.from_config(cfg).parameters())
        if n > MAX_PARAMS:
            return f"{n / 1e6:.0f}M parameters after shrinking its default config"
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg)
    except Exception as e:  # noqa: BLE001
        return f"not buildable tiny from its default config ({type(e).__name__}: {str(e).splitlines()[0][:90]})"
    routes = hf_muon.route(model)
    opt = hf_muon.create_optimizer(model, lr=1e-3)
    x = torch.randint(3, 100, (1, 8), generator=torch.Generator().manual_seed(0))
    probe = _Products()
    try:
        with probe:
            out = model(input_ids=x, labels=x, use_cache=False)
        out.loss.backward()
    except Exception as e:  # noqa: BLE001
        return f"its forward fails on input_ids ({type(e).__name__}: {str(e).splitlines()[0][:90]})"
    forbidden = _forbidden_on_muon(model)
    for r in routes:
        if r.kind == "muon":
            assert id(r.param) not in forbidden, f"{model_type}: {r.name} is a {forbidden[id(r.param)]} on Muon"
        elif r.kind == "adamw" and r.param.ndim >= 2 and r.param.untyped_storage().data_ptr() in probe.storages:
            assert any(k in r.reason for k in ADAMW_REASONS) or id(r.param) in forbidden, (
                f"{model_type}: hidden projection {r.name} {r.shape} on AdamW: {r.reason}"
            )
    opt.step()
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), f"{model_type}: {name} not finite after one step"
    return None


def test_every_causal_lm_architecture_routes_and_steps():
    start, skipped, checked = time.perf_counter(), {}, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for model_type in _architectures():
            why = _check(model_type)
            (checked.append(model_type) if why is None else skipped.__setitem__(model_type, why))
    print(f"\n{len(checked)} architectures checked, {len(skipped)} not ({time.perf_counter() - start:.0f} s):")
    for k, v in skipped.items():
        print(f"  {k}: {v}")
    assert len(checked) >= 150, skipped
