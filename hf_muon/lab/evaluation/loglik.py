"""Batched log-likelihood of continuations given contexts, for a causal LM.

Definition
----------
For a request ``(context, continuation)`` the score is ``sum_t log p(y_t | context, y_<t)`` over the continuation's
tokens ``y``, plus ``is_greedy``: whether every ``y_t`` is the argmax next token (lm-evaluation-harness
``loglikelihood`` output ``(logprob, is_greedy)``).

Tokenisation (lm-evaluation-harness ``HFLM._encode_pair`` convention, the "split trick")
--------------------------------------------------------------------------------------
1. Trailing whitespace of the context moves to the front of the continuation: ``("Answer: ", "A")`` is scored as
   ``("Answer:", " A")``, because BPE tokenizers attach the space to the following word.
2. ``whole = tok(context + continuation)``, ``ctx = tok(context)``, and the continuation tokens are
   ``whole[len(ctx):]``. So the continuation is tokenized *in context* (as the model would see the full text), and
   the context/continuation boundary is placed after as many tokens as the context alone has. Where a BPE merge
   crosses the boundary, the scored tokens are the tail of the joint tokenization, exactly as in the harness.
3. BOS follows lm-eval's ``HFLM`` (``add_bos_token=None`` by default): both encodings use the **tokenizer's
   default** special tokens, so a tokenizer that prepends BOS (Llama / Mistral / Gemma style) gets one on the
   context, and GPT-2 gets none. ``add_bos=True`` forces a BOS prefix, ``add_bos=False`` forbids special tokens
   (:func:`~hf_muon.lab.evaluation._runtime.encode`).
4. An empty context is replaced by one prefix token (BOS, else EOS) and the continuation is encoded without special
   tokens; when the continuation itself starts with that prefix token, its first token becomes the context instead
   (lm-eval ``TemplateLM.loglikelihood``). So the first scored token is always conditioned on something.

Batching
--------
The model input is ``(ctx + cont)[-(max_length + 1):][:-1]``: the context is truncated **from the left** to fit the
model's window and the last continuation token is not fed. Rows are right-padded (attention mask 0 on padding);
with right padding the real tokens keep positions ``0..L-1``, so no ``position_ids`` are needed. The logits at the
last ``len(cont)`` real positions of a row score the continuation. Requests are sorted by length (longest first)
so a batch pads little, and requests with an *identical* model input share one forward pass (e.g. MMLU's four
one-token answers " A".." D" after the same prompt). Only the needed tail of the logits is materialised when the
model accepts ``logits_to_keep``. Log-softmax is taken in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ._runtime import (
    accepts_logits_to_keep,
    encode,
    eval_mode,
    model_device,
    model_max_length,
    pad_id,
    prefix_token_id,
    run_batches,
)


@dataclass(frozen=True)
class LoglikResult:
    """``logprob``: summed log-probability of the continuation tokens (natural log); ``is_greedy``: every token was
    the argmax; ``num_tokens``: how many continuation tokens were scored."""

    logprob: float
    is_greedy: bool
    num_tokens: int


def encode_pair(tokenizer, context: str, continuation: str, add_bos: bool | None = None) -> tuple[list[int], list[int]]:
    """``(context_ids, continuation_ids)`` per the split trick described in the module docstring."""
    if not continuation and not context[len(context.rstrip()) :]:
        raise ValueError("empty continuation: nothing to score")
    if not context:
        first = prefix_token_id(tokenizer)
        if first is None:
            raise ValueError("empty context and the tokenizer has neither a BOS nor an EOS token to condition on")
        cont = encode(tokenizer, continuation, add_bos=False)
        if cont and cont[0] == first:
            return cont[:1], cont[1:]
        return [first], cont
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = encode(tokenizer, context + continuation, add_bos)
    ctx = encode(tokenizer, context, add_bos)
    cont = whole[len(ctx) :]
    if not cont:
        raise ValueError(f"continuation {continuation!r} produced no tokens after context {context[-40:]!r}")
    if not ctx:  # a whitespace-only context that encodes to nothing: condition on the prefix token
        ctx = [prefix_token_id(tokenizer)]
    return ctx, cont


def loglikelihood(
    model,
    tokenizer,
    requests: Sequence[tuple[str, str]],
    *,
    batch_size: int = 8,
    max_length: int | None = None,
    add_bos: bool | None = None,
    accelerator=None,
    progress: bool = True,
    desc: str = "loglikelihood",
) -> list[LoglikResult]:
    """One :class:`LoglikResult` per ``(context, continuation)`` string pair, in request order.

    ``add_bos``: ``None`` (default) follows the tokenizer, ``True`` / ``False`` force a BOS prefix on / off.
    ``max_length`` defaults to the model's context length (:func:`~hf_muon.lab.evaluation._runtime.model_max_length`).
    With ``accelerator`` the requests are sharded over processes and gathered (every rank gets all results).
    """
    pairs = [encode_pair(tokenizer, c, x, add_bos=add_bos) for c, x in requests]
    return loglikelihood_tokens(
        model,
        pairs,
        batch_size=batch_size,
        max_length=max_length or model_max_length(model, tokenizer),
        pad_token_id=pad_id(tokenizer),
        accelerator=accelerator,
        progress=progress,
        desc=desc,
    )


def loglikelihood_tokens(
    model,
    requests: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    batch_size: int = 8,
    max_length: int = 2048,
    pad_token_id: int = 0,
    accelerator=None,
    progress: bool = True,
    desc: str = "loglikelihood",
) -> list[LoglikResult]:
    """Token-level core of :func:`loglikelihood`: requests are ``(context_ids, continuation_ids)``."""
    inputs: list[tuple[int, ...]] = []
    conts: list[tuple[int, ...]] = []
    for i, (ctx, cont) in enumerate(requests):
        if len(cont) == 0:
            raise ValueError(f"request {i}: empty continuation")
        if len(ctx) == 0:
            raise ValueError(f"request {i}: empty context (use encode_pair, which adds a prefix token)")
        if len(cont) > max_length:
            raise ValueError(f"request {i}: continuation of {len(cont)} tokens exceeds max_length={max_length}")
        whole = list(ctx) + list(cont)
        inputs.append(tuple(whole[-(max_length + 1) :][:-1]))
        conts.append(tuple(int(t) for t in cont))

    # requests with an identical model input share a forward pass
    unique: dict[tuple[int, ...], int] = {}
    groups: list[list[int]] = []
    for i, inp in enumerate(inputs):
        u = unique.setdefault(inp, len(groups))
        if u == len(groups):
            groups.append([])
        groups[u].append(i)
    uniq_inputs = list(unique)
    order = sorted(range(len(uniq_inputs)), key=lambda u: (-len(uniq_inputs[u]), u))
    device = model_device(model)
    use_keep = accepts_logits_to_keep(model)

    def score(batch: list[int]) -> list[list[tuple[float, bool]]]:
        lens = [len(uniq_inputs[u]) for u in batch]
        width = max(lens)
        ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, u in enumerate(batch):
            ids[r, : lens[r]] = torch.tensor(uniq_inputs[u], dtype=torch.long)
            mask[r, : lens[r]] = 1
        need = [max(len(conts[i]) for i in groups[u]) for u in batch]
        first = min(L - n for L, n in zip(lens, need))  # earliest position whose logits are needed
        kwargs = {"logits_to_keep": width - first} if use_keep and first > 0 else {}
        offset = first if kwargs else 0
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False, **kwargs).logits
        out = []
        for r, u in enumerate(batch):
            L, n = lens[r], need[r]
            logp = logits[r, L - n - offset : L - offset].float().log_softmax(-1)  # [n, V]
            row = []
            for i in groups[u]:
                k = len(conts[i])
                lp = logp[n - k :]
                target = torch.tensor(conts[i], dtype=torch.long, device=lp.device)
                value = lp.gather(-1, target[:, None]).sum().item()
                greedy = bool((lp.argmax(-1) == target).all().item())
                row.append((value, greedy))
            out.append(row)
        return out

    with eval_mode(model):
        by_unique = run_batches(
            order, score, batch_size=batch_size, accelerator=accelerator, progress=progress, desc=desc
        )
    results: list[LoglikResult | None] = [None] * len(requests)
    for u, members in enumerate(groups):
        for i, (value, greedy) in zip(members, by_unique[u]):
            results[i] = LoglikResult(logprob=float(value), is_greedy=greedy, num_tokens=len(conts[i]))
    return results  # type: ignore[return-value]


__all__ = ["LoglikResult", "encode_pair", "loglikelihood", "loglikelihood_tokens"]
