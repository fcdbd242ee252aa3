"""The ``hf-muon`` command: ``run`` (unmodified scripts with --optim muon), ``plot`` (diagnostics PNGs),
``demo`` (the AdamW-vs-Muon demo)."""

from __future__ import annotations

import sys

COMMANDS = {
    "run": ("hf_muon.run", "run SCRIPT.py|-m MODULE ARGS...  run a training script with --optim muon registered"),
    "plot": ("hf_muon.diagnostics.plot", "plot RUN_DIR  turn diagnostics JSONL into PNG plots"),
    "demo": ("hf_muon.lab.demo", "demo [--data DIR --out DIR]  tiny Llama: AdamW vs Muon through Trainer"),
    "score": ("hf_muon.lab.evaluation.cli", "score MODEL_DIR [--backend native|lm-eval --tasks ... --limit N --output F]  "
              "benchmark a saved model (lm-eval 0.4.13 parity)"),
    "study": ("hf_muon.lab.study.cli", "study CONFIG.yaml [--stages ...]  the pretraining-vs-SFT optimizer-mismatch study"),
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: hf-muon COMMAND ...\n\ncommands:")
        for _, (_, help_) in COMMANDS.items():
            print(f"  {help_}")
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    import importlib

    module = importlib.import_module(COMMANDS[argv[0]][0])
    module.main(argv[1:])


if __name__ == "__main__":
    main()
