"""Shared machinery of the research recipes (``recipes/spectral_laws``, ``recipes/spectral_family``,
``recipes/lr_transfer``), one concern per module; every public name is re-exported here
(``from hf_muon.lab import research as R``).

* :mod:`.config`: :func:`load_config`, a YAML file merged over a recipe's defaults (:func:`merge_config`:
  unknown keys are errors that name the key path, ``train.stpes``, and list the valid ones).
* :mod:`.data`: :func:`text_blocks` (the one data preparation the recipes, the benchmarks and the tests share),
  :func:`batch_order`, and :func:`prepare_data`, real text from the local mirror (:mod:`hf_muon.lab.data`) cut into
  blocks, with the GPT-2 ids *re-indexed* to the ``vocab_size − 1`` most frequent ids of the training split
  plus one "other" id (:func:`hf_muon.lab.data.compact_vocab`).
* models: :func:`build_llama` / :func:`build_gpt2` / :func:`param_counts` live in :mod:`hf_muon.lab.models`.
* :mod:`.optim`: :func:`build_optimizer`, the ``optimizer`` section through :func:`hf_muon.create_optimizer`.
* :mod:`.train`: :func:`fit`, the one training loop (recipes and benchmarks; :class:`History` keeps what ran),
  :func:`lr_factor` / :func:`cosine_factor`, and :func:`train`, the recipes' loop over :func:`fit` (random shuffled blocks, warmup → constant → linear decay,
  optional grad clipping, periodic validation, a ``tqdm`` bar, a per-step hook, divergence detection), and
  :func:`evaluate`, the lab's validation loss (mean NLL per scored token).
* :mod:`.store`: :class:`RunStore`, one JSON per training run; a finished run whose stored spec equals the
  requested one is loaded instead of re-run, so an interrupted recipe resumes where it stopped.
* :mod:`.cost`: :func:`ns_flops` (= :func:`hf_muon.ns.cost.ns_flops`, the one Newton-Schulz FLOP formula),
  :func:`optimizer_ns_flops`, :func:`train_flops` and time estimates.
* :mod:`.stats`: :func:`fit_power_law`, :func:`lr_grid`, :func:`best_lr`.
* :mod:`.report`: :func:`write_json`, :func:`markdown_table`, :func:`fmt`, :func:`command_line`, :func:`plt`,
  :func:`environment`, :func:`report_text`, :func:`save_figure`.
* :mod:`.recipe`: :func:`start_recipe` / :class:`Recipe`, the common ``main`` of a recipe (arguments, config,
  data, run store, the reproducing command) and its ending (``summary.json`` + ``report.md``).
* :mod:`.laws_report`: the figures and report of ``recipes/spectral_laws`` alone (too large for its script;
  not re-exported).

Progress bars honour ``TQDM_DISABLE=1``. Nothing here downloads anything.
"""

from ..data import compact_vocab
from ..models import build_gpt2, build_llama, param_counts
from .config import (
    AUTO_KEYS,
    DATA_DEFAULTS,
    OPTIM_DEFAULTS,
    REPO_DIR,
    TRAIN_DEFAULTS,
    load_config,
    merge_config,
)
from .cost import (
    DEFAULT_NS_THROUGHPUT_GFLOPS,
    DEFAULT_THROUGHPUT_GFLOPS,
    current_ns_steps,
    describe_estimate,
    estimate_minutes,
    ns_flops,
    optimizer_ns_flops,
    time_estimate,
    train_flops,
)
from .data import LMData, batch_order, prepare_data, text_blocks
from .optim import build_optimizer, muon_params
from .recipe import Recipe, parse_args, set_threads, start_recipe
from .report import (
    command_line,
    describe_environment,
    environment,
    fmt,
    markdown_table,
    plt,
    report_text,
    save_figure,
    write_json,
)
from .stats import best_lr, fit_power_law, lr_grid
from .store import RunStore
from .train import History, cosine_factor, evaluate, fit, lr_factor, progress, train

__all__ = [
    "AUTO_KEYS",
    "DATA_DEFAULTS",
    "DEFAULT_NS_THROUGHPUT_GFLOPS",
    "DEFAULT_THROUGHPUT_GFLOPS",
    "OPTIM_DEFAULTS",
    "REPO_DIR",
    "Recipe",
    "TRAIN_DEFAULTS",
    "History",
    "LMData",
    "RunStore",
    "batch_order",
    "best_lr",
    "build_gpt2",
    "build_llama",
    "build_optimizer",
    "command_line",
    "compact_vocab",
    "cosine_factor",
    "current_ns_steps",
    "describe_environment",
    "describe_estimate",
    "environment",
    "estimate_minutes",
    "evaluate",
    "fit",
    "fit_power_law",
    "fmt",
    "load_config",
    "lr_factor",
    "lr_grid",
    "markdown_table",
    "merge_config",
    "muon_params",
    "ns_flops",
    "optimizer_ns_flops",
    "param_counts",
    "parse_args",
    "plt",
    "progress",
    "report_text",
    "save_figure",
    "prepare_data",
    "set_threads",
    "start_recipe",
    "text_blocks",
    "train",
    "time_estimate",
    "train_flops",
    "write_json",
]
