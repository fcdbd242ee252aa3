"""Batched generation that stops at strings (lm-evaluation-harness ``generate_until`` semantics).

* Prompts are tokenized with lm-eval's BOS convention (``add_bos=None``: the tokenizer's default special tokens, so a
  BOS-prepending tokenizer gets its BOS; ``True`` / ``False`` force it on / off; see
  :func:`~hf_muon.lab.evaluation._runtime.encode`) and truncated **from the left** to
  ``max_length - max_new_tokens``.
* Rows are **left**-padded (a decoder-only model continues from the last real token); ``generate`` derives the
  position ids from the attention mask, so a padded row generates what it would alone (up to float round-off).
* A row stops at EOS (the model's ``generation_config`` EOS ids and the tokenizer's), after ``max_new_tokens``, or as soon as its *generated* text contains one of ``stop``; the
  returned text is cut before the earliest stop string (the stop string itself is not returned).
* Greedy by default. With ``do_sample=True`` each batch draws from a private RNG stream seeded with
  ``seed + index of the batch's first prompt`` (the global RNG state is restored afterwards), so samples do not
  depend on how prompts are split across processes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._runtime import encode, eval_mode, model_device, model_max_length, pad_id, run_batches, unwrap


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]


def _stop_criterion(tokenizer, stop: Sequence[str], prompt_width: int):
    from transformers import StoppingCriteria

    stops = [s for s in stop if s]
    lookback = max((len(s) for s in stops), default=0) + 8  # tokens: every token decodes to >= 0 characters

    class StopOnStrings(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            new = input_ids[:, prompt_width:]
            done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            if not stops or new.shape[1] == 0:
                return done
            tails = tokenizer.batch_decode(new[:, -lookback:], skip_special_tokens=True)
            for r, t in enumerate(tails):
                done[r] = any(s in t for s in stops)
            return done

    return StopOnStrings()


def _eos_ids(model, tokenizer) -> list[int] | int | None:
    """The ids a row stops at: the model's ``generation_config.eos_token_id`` (what lm-eval's ``HFLM`` leaves
    ``generate`` to use, e.g. both ``<|end_of_text|>`` and ``<|eot_id|>`` for Llama 3) plus the tokenizer's EOS."""
    ids: list[int] = []
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in ([gen_eos] if isinstance(gen_eos, int) else list(gen_eos or [])) + [
        getattr(tokenizer, "eos_token_id", None)
    ]:
        if value is not None and int(value) not in ids:
            ids.append(int(value))
    if not ids:
        return None
    return ids[0] if len(ids) == 1 else ids


def generate_until(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    stop: Sequence[str] = (),
    max_new_tokens: int = 256,
    batch_size: int = 8,
    max_length: int | None = None,
    num_samples: int = 1,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    add_bos: bool | None = None,
    accelerator=None,
    progress: bool = True,
    desc: str = "generate",
) -> list[list[str]]:
    """For each prompt, ``num_samples`` completions (strings, cut at the first stop string), in prompt order.

    The model is unwrapped (``accelerator.unwrap_model``) for ``generate``; with ``accelerator`` the prompts are
    sharded over processes and the completions gathered on every rank.
    """
    from transformers import GenerationConfig, StoppingCriteriaList

    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    gen_model = unwrap(model, accelerator)
    max_length = max_length or model_max_length(gen_model, tokenizer)
    budget = max_length - max_new_tokens
    if budget < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in max_length={max_length}")
    encoded = [encode(tokenizer, p, add_bos, for_generation=True)[-budget:] for p in prompts]
    for i, ids in enumerate(encoded):
        if not ids:  # an empty prompt: condition on EOS/BOS like lm-eval's prefix token
            first = getattr(tokenizer, "bos_token_id", None)
            first = first if first is not None else getattr(tokenizer, "eos_token_id", None)
            if first is None:
                raise ValueError(f"prompt {i} is empty and the tokenizer has no BOS/EOS token")
            encoded[i] = [int(first)]
    order = sorted(range(len(encoded)), key=lambda i: (-len(encoded[i]), i))
    device = model_device(gen_model)
    pad = pad_id(tokenizer)
    eos = _eos_ids(gen_model, tokenizer)
    config = dict(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        num_return_sequences=num_samples,
        pad_token_id=pad,
        eos_token_id=eos,
    )
    if do_sample:
        config.update(temperature=temperature, top_p=top_p, top_k=0)
    gen_config = GenerationConfig(**config)

    def run(batch: list[int]) -> list[list[str]]:
        width = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, i in enumerate(batch):
            n = len(encoded[i])
            ids[r, width - n :] = torch.tensor(encoded[i], dtype=torch.long)
            mask[r, width - n :] = 1
        criteria = StoppingCriteriaList([_stop_criterion(tokenizer, stop, width)])
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, enabled=do_sample):
            if do_sample:
                torch.manual_seed(seed + batch[0])
            out = gen_model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                generation_config=gen_config,
                stopping_criteria=criteria,
            )
        texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
        texts = [truncate_at_stop(t, stop) for t in texts]
        return [texts[r * num_samples : (r + 1) * num_samples] for r in range(len(batch))]

    with eval_mode(gen_model):
        got = run_batches(order, run, batch_size=batch_size, accelerator=accelerator, progress=progress, desc=desc)
    return [got[i] for i in range(len(prompts))]


__all__ = ["generate_until", "truncate_at_stop"]
