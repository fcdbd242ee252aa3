"""The ``hf-muon`` command: ``run`` (unmodified scripts with --optim muon), ``config`` (the launcher config files
shipped in the package), ``optim-args`` (the ``--optim_args`` table), ``plot`` (diagnostics PNGs), and the lab's
``demo``, ``score`` and ``study``."""

from __future__ import annotations

import importlib.util
import sys
from importlib import resources
from pathlib import Path

# command: (module with main(argv), the extra it needs, the modules that extra provides, one-line usage)
COMMANDS = {
    "run": (
        "hf_muon.run",
        "hf",
        ("transformers",),
        "run SCRIPT.py|-m MODULE ARGS...  run a training script with --optim muon registered",
    ),
    "config": (
        "hf_muon.cli",
        None,
        (),
        "config [NAME [--out PATH]]  list, print or write a launcher config shipped with hf_muon",
    ),
    "optim-args": (
        "hf_muon.cli",
        None,
        (),
        "optim-args [--update FILE...]  print the --optim_args table (markdown)",
    ),
    "plot": (
        "hf_muon.diagnostics.plot",
        "study",
        ("matplotlib",),
        "plot RUN_DIR  turn diagnostics JSONL into PNG plots",
    ),
    "demo": (
        "hf_muon.lab.demo",
        "study",
        ("transformers", "datasets", "matplotlib"),
        "demo [--data DIR --out DIR]  tiny Llama: AdamW vs Muon through Trainer",
    ),
    "score": (
        "hf_muon.lab.evaluation.cli",
        "study",
        ("transformers", "datasets", "evaluate"),
        "score MODEL_DIR [--backend native|lm-eval --tasks ... --limit N --output F]  "
        "benchmark a saved model (lm-eval 0.4.13 parity)",
    ),
    "study": (
        "hf_muon.lab.study.cli",
        "study",
        ("transformers", "datasets", "evaluate", "yaml", "matplotlib"),
        "study CONFIG.yaml [--stages ...]  the pretraining-vs-SFT optimizer-mismatch study",
    ),
}
CONFIG_SUFFIXES = (".yaml", ".json")


def usage() -> str:
    return "usage: hf-muon COMMAND ...\n\ncommands:\n" + "\n".join(f"  {c[3]}" for c in COMMANDS.values())


def config_names() -> list[str]:
    """The config files shipped in ``hf_muon/configs`` (accelerate YAML, DeepSpeed JSON), by file name."""
    folder = resources.files("hf_muon") / "configs"
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(CONFIG_SUFFIXES))


def config_text(name: str) -> str:
    """The text of the shipped config ``name`` (``ddp`` or ``ddp.yaml``); unknown names are an error listing them."""
    names = config_names()
    match = [n for n in names if n == name or Path(n).stem == name]
    if not match:
        raise SystemExit(f"hf-muon config: unknown config {name!r}; shipped: {', '.join(names)}")
    return (resources.files("hf_muon") / "configs" / match[0]).read_text()


def _summary(name: str, text: str) -> str:
    """What the config is for: a YAML's first comment line that is not a command; a DeepSpeed JSON's ZeRO stage."""
    if name.endswith(".json"):
        import json

        stage = json.loads(text).get("zero_optimization", {}).get("stage")
        return f"DeepSpeed ZeRO-{stage} (--deepspeed {name})" if stage is not None else "DeepSpeed config"
    comments = [ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("#")]
    first = next((c for c in comments if c and not c.startswith(("accelerate ", "deepspeed ", "hf-muon "))), "")
    return first.split(". ")[0].split(": ")[0].split(";")[0]


def config_main(argv: list[str]) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="hf-muon config", description=COMMANDS["config"][3])
    ap.add_argument("name", nargs="?", help="a shipped config (without NAME: list them)")
    ap.add_argument("--out", type=Path, default=None, help="write the config to this path instead of printing it")
    a = ap.parse_args(argv)
    if a.name is None:
        for n in config_names():
            print(f"{n:<28} {_summary(n, config_text(n))}")
        return
    text = config_text(a.name)
    if a.out is None:
        sys.stdout.write(text)
        return
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    print(f"wrote {a.out}")


def optim_args_main(argv: list[str]) -> None:
    import argparse
    import re

    from .config import markdown_table

    ap = argparse.ArgumentParser(prog="hf-muon optim-args", description=COMMANDS["optim-args"][3])
    ap.add_argument(
        "--update",
        nargs="+",
        type=Path,
        default=[],
        metavar="FILE",
        help="rewrite the table between <!-- optim_args:start --> and <!-- optim_args:end --> in FILEs",
    )
    a = ap.parse_args(argv)
    table = markdown_table()
    if not a.update:
        print(table)
    marked = re.compile(r"(<!-- optim_args:start -->\n).*?(\n<!-- optim_args:end -->)", re.S)
    for path in a.update:
        text = path.read_text(encoding="utf-8")
        if not marked.search(text):
            raise SystemExit(f"hf-muon optim-args: {path} has no <!-- optim_args:start/end --> markers")
        path.write_text(marked.sub(lambda m: m.group(1) + table + m.group(2), text), encoding="utf-8")
        print(f"updated {path}")


def missing_extra(command: str) -> str | None:
    """The error for ``command`` when a module of the extra it needs is not installed, else None."""
    _, extra, modules, _ = COMMANDS[command]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return f'hf-muon {command} needs {", ".join(missing)}, which is not installed: pip install "hf_muon[{extra}]"'


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        raise SystemExit(0 if argv else 2)
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"hf-muon: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    if command == "config":
        return config_main(rest)
    if command == "optim-args":
        return optim_args_main(rest)
    error = missing_extra(command)
    if error:
        print(error, file=sys.stderr)
        raise SystemExit(1)
    import importlib

    importlib.import_module(COMMANDS[command][0]).main(rest)


if __name__ == "__main__":
    main()
