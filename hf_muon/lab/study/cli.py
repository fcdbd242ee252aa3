"""``hf-muon study CONFIG.yaml [--stages pretrain,sft,score,report] [--seeds 0,1] [--output-dir DIR]``."""

from __future__ import annotations

import argparse
import sys

from .config import load_config
from .pipeline import STAGES, run_study


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="hf-muon study", description="Run or resume the optimizer-mismatch study.")
    ap.add_argument("config", help="study YAML (recipes/mismatch/*.yaml)")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma list out of {', '.join(STAGES)}")
    ap.add_argument("--output-dir", default=None, help="override output_dir")
    ap.add_argument("--data-dir", default=None, help="override data_dir (local mirror)")
    ap.add_argument("--model-cards-dir", default=None, help="also copy the generated cards here")
    ap.add_argument(
        "--seeds",
        default=None,
        help="comma list of seeds to run now (default: the config's); the report aggregates every "
        "seed finished under the output dir",
    )
    a = ap.parse_args(argv)
    overrides = {
        k: v
        for k, v in (("output_dir", a.output_dir), ("data_dir", a.data_dir), ("model_cards_dir", a.model_cards_dir))
        if v
    }
    if a.seeds:
        try:
            overrides["seeds"] = [int(x) for x in a.seeds.split(",") if x.strip()]
        except ValueError:
            ap.error(f"--seeds: expected a comma list of integers, got {a.seeds!r}")
    cfg = load_config(a.config, overrides)
    command = " ".join(["hf-muon", "study", *(argv if argv is not None else sys.argv[1:])])
    out = run_study(cfg, stages=[s.strip() for s in a.stages.split(",") if s.strip()], command=command)
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
