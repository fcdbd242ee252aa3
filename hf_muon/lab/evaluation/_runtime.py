"""Shared plumbing for the model-side evaluation: devices, lengths, padding ids, and sharded batch loops.

:func:`run_batches` is the one place that knows about accelerate. Without an ``Accelerator`` it loops over the
batches locally. With one, the (pre-ordered) request indices go through ``accelerator.prepare_data_loader`` so
each process gets whole batches, every process runs its share, and ``accelerator.gather_for_metrics`` collects the
``(index, result)`` pairs on every rank (``use_gather_object=True``, since results are Python objects). Results are
keyed by request index, so the samples that accelerate repeats to even out the last batch are harmless. Every
process ends with all results, and metrics are computed identically on every rank.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

_LENGTH_ATTRS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length")


def unwrap(model, accelerator=None):
    """The bare model (``accelerator.unwrap_model`` when an accelerator is given, DDP ``.module`` otherwise)."""
    if accelerator is not None:
        return accelerator.unwrap_model(model)
    return getattr(model, "module", model) if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def model_device(model) -> torch.device:
    """Device of the model's first parameter (where its inputs go); CPU for a parameterless model."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def model_max_length(model, tokenizer=None, default: int = 2048) -> int:
    """Context length: the model config's position limit, else the tokenizer's ``model_max_length``, else ``default``."""
    cfg = getattr(unwrap(model), "config", None)
    for attr in _LENGTH_ATTRS:
        value = getattr(cfg, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 10**7:
        return value
    return default


def pad_id(tokenizer) -> int:
    """The id used for padding: the tokenizer's pad token, else EOS, else 0 (padded positions are masked anyway)."""
    for attr in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return 0


def prefix_token_id(tokenizer) -> int | None:
    """lm-eval ``HFLM.prefix_token_id``: the token an empty context is replaced by (BOS, else EOS)."""
    for attr in ("bos_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return None


def _starts_with_bos_text(tokenizer, text: str, for_generation: bool) -> bool:
    """lm-eval's ``has_bos_prefix`` check: the text already begins with the BOS string (generation:
    ``tokenizer.bos_token``; log-likelihood: ``tokenizer.decode(prefix_token_id)``)."""
    if for_generation:
        marker = getattr(tokenizer, "bos_token", None)
    else:
        pid = prefix_token_id(tokenizer)
        marker = tokenizer.decode([pid]) if pid is not None else None
    return isinstance(marker, str) and bool(marker) and text.startswith(marker)


def encode(tokenizer, text: str, add_bos: bool | None = None, *, for_generation: bool = False) -> list[int]:
    """Token ids of ``text`` under lm-evaluation-harness ``HFLM`` BOS conventions (``add_bos_token``).

    * ``add_bos=None`` (lm-eval's default ``add_bos_token=None``): the **tokenizer's default** special tokens
      (``add_special_tokens=True``): a Llama / Mistral / Gemma style tokenizer prepends its BOS, GPT-2 adds nothing;
    * ``add_bos=True``: no tokenizer special tokens, then the BOS id prepended (when the tokenizer has one);
    * ``add_bos=False``: no special tokens at all.

    As in lm-eval, a text that already starts with the BOS string gets no special tokens added.
    """
    if _starts_with_bos_text(tokenizer, text, for_generation):
        return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
    if add_bos is None:
        return list(tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"])
    ids = list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
    bos = getattr(tokenizer, "bos_token_id", None)
    if add_bos and bos is not None:
        ids = [int(bos)] + ids
    return ids


def accepts_logits_to_keep(model) -> bool:
    """Whether ``model.forward`` takes ``logits_to_keep`` (most transformers causal LMs do)."""
    import inspect

    fwd = getattr(unwrap(model), "forward", None)
    try:
        return fwd is not None and "logits_to_keep" in inspect.signature(fwd).parameters
    except (TypeError, ValueError):
        return False


@contextmanager
def eval_mode(model) -> Iterator[None]:
    """``model.eval()`` and ``torch.inference_mode()`` for the block; the previous train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def is_main_process(accelerator) -> bool:
    return accelerator is None or accelerator.is_local_main_process


def run_batches(
    order: Sequence[int],
    fn: Callable[[list[int]], Sequence[Any]],
    *,
    batch_size: int,
    accelerator=None,
    progress: bool = True,
    desc: str = "",
) -> dict[int, Any]:
    """``{index: result}`` for every index in ``order``; ``fn(batch_indices)`` returns one result per index.

    ``order`` fixes the batching (callers sort requests by length so a batch pads little). With an accelerator the
    batches are sharded across processes and gathered with ``gather_for_metrics`` (see the module docstring).
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = [int(i) for i in order]
    results: dict[int, Any] = {}
    if not order:
        return results
    show = progress and is_main_process(accelerator)
    if accelerator is None:
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        for batch in tqdm(batches, desc=desc, disable=not show, leave=False):
            out = fn(batch)
            if len(out) != len(batch):
                raise RuntimeError(f"{desc}: {len(out)} results for a batch of {len(batch)}")
            results.update(zip(batch, out))
        return results

    from torch.utils.data import DataLoader

    loader = accelerator.prepare_data_loader(
        DataLoader(order, batch_size=batch_size, shuffle=False, collate_fn=list), device_placement=False
    )
    for batch in tqdm(loader, desc=desc, disable=not show, leave=False):
        batch = [int(i) for i in batch]
        out = fn(batch)
        if len(out) != len(batch):
            raise RuntimeError(f"{desc}: {len(out)} results for a batch of {len(batch)}")
        for idx, res in accelerator.gather_for_metrics(list(zip(batch, out)), use_gather_object=True):
            results[int(idx)] = res
    missing = set(order) - results.keys()
    if missing:
        raise RuntimeError(f"{desc}: {len(missing)} requests got no result after gathering (e.g. {min(missing)})")
    return results
