"""Small pretraining-data helpers: a GPT-2 tokenizer, local text corpora, fixed-length LM blocks.

The data folder is a *local mirror* of public Hub data (see ``../shared/data/README.md``)::

    <data_dir>/tokenizers/gpt2/                      GPT-2 byte-level BPE (tokenizer.json, vocab, merges)
    <data_dir>/pretrain/tinystories_validation_head.txt
    <data_dir>/pretrain/tinyshakespeare_input.txt
    <data_dir>/pretrain/wikitext2_v1/wiki.valid.tokens
    <data_dir>/pretrain/c4_demo_llamafactory.jsonl   one {"text": ...} document per line

Typical use::

    tok = load_tokenizer(data_dir)
    blocks = lm_blocks(tok, load_text(data_dir, "tinystories"), block_size=128)
    train, val = train_val_split(blocks)          # last ~10% of blocks held out

``data_dir`` defaults to the ``HF_MUON_DATA`` environment variable (the Makefile sets it); :func:`resolve_data_dir`
is the lab's one lookup of the mirror. :func:`compact_vocab` re-indexes GPT-2 ids to a small vocabulary
(the most frequent training ids plus one "other" id) for CPU-sized output layers.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

HUB_TOKENIZER = "openai-community/gpt2"
DATA_ENV = "HF_MUON_DATA"
REPO_DIR = Path(__file__).resolve().parents[2]  # the source checkout (hf_muon/lab/data.py -> repository root)

# corpus name -> (path under <data_dir>/pretrain, Hub dataset it samples)
CORPORA: dict[str, tuple[str, str]] = {
    "tinystories": ("tinystories_validation_head.txt", "roneneldan/TinyStories"),
    "tinyshakespeare": ("tinyshakespeare_input.txt", "tiny-shakespeare"),
    "wikitext2": ("wikitext2_v1/wiki.valid.tokens", "Salesforce/wikitext (wikitext-2-v1)"),
    "c4": ("c4_demo_llamafactory.jsonl", "allenai/c4 (en)"),
}

# Split points that are pretoken boundaries for GPT-2's byte-level regex: right after a non-space
# character and before a newline. No regex alternative matches across a non-space -> space
# boundary, so tokenizing the pieces separately gives exactly the ids of tokenizing the whole text.
_SAFE_SPLIT = re.compile(r"(?<=\S)(?=\n)")


def resolve_data_dir(data_dir: str | os.PathLike | None = None, *, required: bool = False) -> Path | None:
    """The local data mirror, looked up the same way everywhere in the lab.

    ``data_dir`` (an argument, ``--data``, a config's ``data_dir``) when given, else ``$HF_MUON_DATA``, else
    ``None`` (callers that can, such as the study and the evaluation tasks, then read the Hub).

    ``required=True`` is for callers that never go to the Hub (the research recipes): a given folder must
    exist (``FileNotFoundError`` naming where it came from), and with neither set it falls back to
    ``../shared/data`` beside the repository checkout, else raises.
    """
    for cand, origin in ((data_dir, "data_dir"), (os.environ.get(DATA_ENV), f"${DATA_ENV}")):
        if cand is None or str(cand) == "":
            continue
        p = Path(cand).expanduser()
        if required and not p.is_dir():
            raise FileNotFoundError(f"data dir {p} (from {origin}) does not exist")
        return p
    if not required:
        return None
    fallback = REPO_DIR.parent / "shared" / "data"
    if fallback.is_dir():
        return fallback
    raise FileNotFoundError(
        f"no data dir: set data_dir or ${DATA_ENV} to the shared data mirror ({fallback} is absent)"
    )


def compact_vocab(train_ids, vocab_size: int, full_vocab: int):
    """A map full id → new id (a ``(full_vocab,)`` int64 tensor, apply as ``remap[ids]``).

    ``vocab_size`` is the *model's* vocabulary including the "other" id: the ``vocab_size − 1`` most
    frequent ids of ``train_ids`` keep a slot (most frequent first; ties: lower id first), every other id
    maps to ``vocab_size − 1`` ("other"). Counted on the training split only, so validation text never
    shapes the vocabulary.
    """
    import torch

    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
    counts = torch.bincount(train_ids.flatten(), minlength=full_vocab)
    keep = counts.argsort(descending=True, stable=True)[: vocab_size - 1]
    remap = torch.full((full_vocab,), vocab_size - 1, dtype=torch.long)
    remap[keep] = torch.arange(len(keep))
    return remap


def truncate_bpe(tokenizer, vocab_size: int):
    """GPT-2's byte-level BPE cut to its first ``vocab_size`` tokens: the 256 bytes, the first
    ``vocab_size − 257`` merges (merge rank r makes id 256 + r, so every kept id means what it means in GPT-2),
    and ``<|endoftext|>`` moved to id ``vocab_size − 1``. A smaller output layer for CPU-sized models
    (at 50,257 tokens the LM head is ~90% of a 7M-parameter Llama's FLOPs); text tokenizes into more, shorter
    pieces. Returns a new ``GPT2TokenizerFast``."""
    import json as _json

    from tokenizers import Tokenizer
    from transformers import GPT2TokenizerFast

    if not 512 <= vocab_size <= len(tokenizer):
        raise ValueError(f"vocab_size must be in [512, {len(tokenizer)}], got {vocab_size}")
    spec = _json.loads(tokenizer.backend_tokenizer.to_str())
    eos = tokenizer.eos_token
    model = spec["model"]
    keep = vocab_size - 1
    model["vocab"] = {t: i for t, i in model["vocab"].items() if i < keep}
    model["merges"] = model["merges"][: keep - 256]
    if len(model["vocab"]) != keep:
        raise ValueError(f"the tokenizer's first {keep} ids are not 256 bytes + merges in rank order")
    model["vocab"][eos] = keep
    spec["added_tokens"] = [dict(t, id=keep) for t in spec["added_tokens"] if t["content"] == eos]
    tok = GPT2TokenizerFast(
        tokenizer_object=Tokenizer.from_str(_json.dumps(spec)), eos_token=eos, bos_token=eos, unk_token=eos
    )
    tok.pad_token = tok.eos_token
    return tok


def load_tokenizer(data_dir: str | os.PathLike | None = None, vocab_size: int | None = None):
    """The GPT-2 BPE tokenizer (50,257 tokens, ``eos_token`` = ``<|endoftext|>``); ``vocab_size`` cuts it to its
    first tokens (:func:`truncate_bpe`).

    Loaded from the local mirror ``<data_dir>/tokenizers/gpt2``. Only when no data dir is given (and
    ``$HF_MUON_DATA`` is unset) does it fall back to the Hub name ``openai-community/gpt2``. A data dir
    that lacks the tokenizer is an error naming the missing path, never a silent Hub download.
    """
    from transformers import GPT2TokenizerFast

    root = resolve_data_dir(data_dir)
    if root is None:
        tok = GPT2TokenizerFast.from_pretrained(HUB_TOKENIZER)
    else:
        tok_dir = root / "tokenizers" / "gpt2"
        tok_file = tok_dir / "tokenizer.json"
        if tok_file.is_file() or ((tok_dir / "vocab.json").is_file() and (tok_dir / "merges.txt").is_file()):
            tok = GPT2TokenizerFast.from_pretrained(str(tok_dir))
        else:
            raise FileNotFoundError(
                f"GPT-2 tokenizer not found: expected {tok_file} (or vocab.json + merges.txt in {tok_dir}). "
                f"Point --data / ${DATA_ENV} at the shared data mirror, or pass data_dir=None to load "
                f"{HUB_TOKENIZER!r} from the Hub."
            )
    if len(tok) < 256:  # transformers 5 can return an empty BPE (offline, no cache) that maps all text to []
        where = tok_dir if root is not None else f"the Hub ({HUB_TOKENIZER}; offline or not cached?)"
        raise ValueError(
            f"the GPT-2 tokenizer loaded from {where} has only {len(tok)} tokens. Pass the shared data "
            f"mirror as data_dir / --data / ${DATA_ENV} to use its tokenizers/gpt2."
        )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok if vocab_size is None or vocab_size == len(tok) else truncate_bpe(tok, vocab_size)


def corpus_path(data_dir: str | os.PathLike | None, corpus: str = "tinystories") -> Path:
    """Path of ``corpus`` inside the mirror; raises naming the file when it is absent."""
    if corpus not in CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; valid: {', '.join(CORPORA)}")
    root = resolve_data_dir(data_dir)
    if root is None:
        raise ValueError(f"no data dir given: pass data_dir (or --data) or set ${DATA_ENV} to the shared data mirror")
    rel, hub = CORPORA[corpus]
    path = root / "pretrain" / rel
    if not path.is_file():
        hint = "" if root.is_dir() else f" (the data dir {root} does not exist)"
        raise FileNotFoundError(
            f"{corpus} data not found: expected {path}{hint}. It is a local sample of {hub}; point --data / "
            f"${DATA_ENV} at the shared data mirror (the folder holding pretrain/ and tokenizers/)."
        )
    return path


def load_documents(data_dir: str | os.PathLike | None, corpus: str = "tinystories") -> list[str]:
    """The corpus as a list of documents: one per JSONL row for ``c4``, one whole text otherwise."""
    path = corpus_path(data_dir, corpus)
    if path.suffix != ".jsonl":
        return [path.read_text(encoding="utf-8")]
    docs = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e})") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise ValueError(f"{path}:{lineno}: expected an object with a string field 'text'")
            docs.append(row["text"])
    if not docs:
        raise ValueError(f"{path} holds no documents")
    return docs


def load_text(data_dir: str | os.PathLike | None, corpus: str = "tinystories") -> str:
    """The corpus as one string (``c4`` documents joined by blank lines).

    Corpora: ``tinystories`` (default), ``tinyshakespeare``, ``wikitext2`` (v1 validation tokens,
    ``<unk>`` and `` @-@ `` kept as in the dataset) and ``c4`` (field ``"text"``). For document-aware
    blocks (an EOS token between documents) pass :func:`load_documents` to :func:`lm_blocks` instead.
    """
    return "\n\n".join(load_documents(data_dir, corpus))


def _chunks(text: str, target_chars: int = 2000) -> Iterator[str]:
    """Consecutive pieces of ``text`` cut only at pretoken boundaries, each about ``target_chars`` long."""
    buf, size = [], 0
    for piece in _SAFE_SPLIT.split(text):
        buf.append(piece)
        size += len(piece)
        if size >= target_chars:
            yield "".join(buf)
            buf, size = [], 0
    if buf:
        yield "".join(buf)


def _token_stream(tokenizer, docs: Sequence[str], eos: bool, batch: int = 64) -> Iterator[list[int]]:
    """Token ids of ``docs`` in order, in pieces; an EOS id after each document when ``eos``."""
    eos_id = tokenizer.eos_token_id if eos else None
    if eos and eos_id is None:
        raise ValueError("the tokenizer has no eos_token; documents cannot be separated")

    def pieces() -> Iterator[tuple[str, bool]]:  # (chunk, ends a document)
        for doc in docs:
            chunks = list(_chunks(doc))
            for i, c in enumerate(chunks):
                yield c, i == len(chunks) - 1

    pending: list[tuple[str, bool]] = []
    for item in pieces():
        pending.append(item)
        if len(pending) >= batch:
            yield from _encode(tokenizer, pending, eos_id)
            pending = []
    if pending:
        yield from _encode(tokenizer, pending, eos_id)


def _encode(tokenizer, pending: list[tuple[str, bool]], eos_id: int | None) -> Iterator[list[int]]:
    enc = tokenizer([c for c, _ in pending], add_special_tokens=False, verbose=False)["input_ids"]
    for ids, (_, ends_doc) in zip(enc, pending, strict=True):
        yield list(ids) + ([eos_id] if ends_doc and eos_id is not None else [])


def lm_blocks(tokenizer, text: str | Sequence[str], block_size: int, max_tokens: int | None = None):
    """A ``datasets.Dataset`` of fixed-length causal-LM blocks with ``input_ids`` and ``labels``.

    ``text`` is one string (tokenized as a single stream, exactly as tokenizing it whole would) or a
    list of documents (an EOS token is appended to each, GPT-2 style). The token stream is cut into
    consecutive non-overlapping blocks of ``block_size``; the remainder is dropped. ``labels`` equal
    ``input_ids`` (HF causal-LM models shift them internally). ``max_tokens`` caps the tokens used
    (tokenization stops early), which keeps tiny runs fast.
    """
    from datasets import Dataset

    if block_size < 2:
        raise ValueError(f"block_size must be >= 2, got {block_size}")
    if max_tokens is not None and max_tokens < block_size:
        raise ValueError(f"max_tokens={max_tokens} is smaller than one block ({block_size} tokens)")
    is_docs = not isinstance(text, str)
    docs = list(text) if is_docs else [text]
    ids: list[int] = []
    for piece in _token_stream(tokenizer, docs, eos=is_docs):
        ids.extend(piece)
        if max_tokens is not None and len(ids) >= max_tokens:
            del ids[max_tokens:]
            break
    n_blocks = len(ids) // block_size
    if n_blocks == 0:
        raise ValueError(f"only {len(ids)} tokens of text: not enough for one block of {block_size}")
    blocks = [ids[i * block_size : (i + 1) * block_size] for i in range(n_blocks)]
    return Dataset.from_dict({"input_ids": blocks, "labels": [list(b) for b in blocks]})


def train_val_split(dataset, val_fraction: float = 0.1, max_val: int | None = None):
    """``(train, val)``: the last ``val_fraction`` of blocks (at least one) held out, in order.

    A contiguous tail, not a random sample, so validation text never overlaps training text within a
    block stream. ``max_val`` caps the number of held-out blocks (faster evaluation).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n = len(dataset)
    if n < 2:
        raise ValueError(f"need at least 2 blocks to split into train and validation, got {n}")
    n_val = max(1, round(n * val_fraction))
    if max_val is not None:
        n_val = max(1, min(n_val, max_val))
    n_train = n - n_val
    return dataset.select(range(n_train)), dataset.select(range(n_train, n))


__all__ = [
    "CORPORA",
    "DATA_ENV",
    "HUB_TOKENIZER",
    "compact_vocab",
    "corpus_path",
    "lm_blocks",
    "load_documents",
    "load_text",
    "load_tokenizer",
    "resolve_data_dir",
    "train_val_split",
    "truncate_bpe",
]
