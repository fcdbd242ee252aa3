"""``hf-muon study CONFIG.yaml [--stages pretrain,sft,score,report] [--output-dir DIR]``."""

from __future__ import annotations

import argparse

from .config import load_config
from .pipeline import STAGES, run_study


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="hf-muon study", description="Run or resume the optimizer-mismatch study.")
    ap.add_argument("config", help="study YAML (recipes/mismatch/*.yaml)")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma list out of {', '.join(STAGES)}")
    ap.add_argument("--output-dir", default=None, help="override output_dir")
    ap.add_argument("--data-dir", default=None, help="override data_dir (local mirror)")
    ap.add_argument("--model-cards-dir", default=None, help="also copy the generated cards here")
    a = ap.parse_args(argv)
    overrides = {k: v for k, v in (("output_dir", a.output_dir), ("data_dir", a.data_dir),
                                   ("model_cards_dir", a.model_cards_dir)) if v}
    cfg = load_config(a.config, overrides)
    out = run_study(cfg, stages=[s.strip() for s in a.stages.split(",") if s.strip()])
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
