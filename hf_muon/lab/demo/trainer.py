"""One demo run through HF ``Trainer``: :func:`train_one` (and its progress bar)."""

from __future__ import annotations

import math
import time
from pathlib import Path

from .setup import LABELS, Setup, build_model, make_optimizer


def _progress_callback_cls():
    """A Trainer progress bar that shows the loss on the bar and prints only evaluation lines."""
    from transformers.trainer_callback import ProgressCallback

    class _DemoProgress(ProgressCallback):
        def __init__(self, label: str):
            super().__init__()
            self.label = label

        def on_train_begin(self, args, state, control, **kwargs):
            super().on_train_begin(args, state, control, **kwargs)
            if self.training_bar is not None:
                self.training_bar.set_description(self.label)

        def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
            pass  # evaluation is a few batches: no second bar

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.training_bar is None or not logs:
                return
            if "loss" in logs:
                self.training_bar.set_postfix(loss=f"{logs['loss']:.3f}", refresh=False)
            if "eval_loss" in logs:
                self.training_bar.write(
                    f"  [{self.label}] step {state.global_step:>4}: val loss {logs['eval_loss']:.4f}"
                )

    return _DemoProgress


def train_one(name: str, config, train_ds, val_ds, args, setup: Setup, workdir: Path) -> dict:
    """Train one fresh copy of the model with optimizer ``name``; return its curves and final numbers."""
    from transformers import Trainer, TrainingArguments, default_data_collator
    from transformers.trainer_callback import ProgressCallback

    model = build_model(config, args.seed)
    optimizer = make_optimizer(name, model, args.lr, args.weight_decay)
    groups = optimizer.describe() if hasattr(optimizer, "describe") else None  # peak lrs, before the schedule
    steps = args.steps or setup.steps
    eval_steps = math.ceil(steps / max(1, setup.eval_points))  # the last evaluation lands on the last step
    targs = TrainingArguments(
        output_dir=str(workdir / name),  # nothing is saved (save_strategy="no")
        max_steps=steps,
        per_device_train_batch_size=args.batch_size or setup.batch_size,
        per_device_eval_batch_size=2 * (args.batch_size or setup.batch_size),
        learning_rate=args.lr,  # the optimizer's own group lrs are what the schedule scales
        lr_scheduler_type="cosine",
        warmup_steps=args.warmup,
        max_grad_norm=1.0,
        logging_steps=setup.logging_steps,
        logging_first_step=True,
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        fp16=False,
        seed=args.seed,
        data_seed=args.seed,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        data_collator=default_data_collator,
        optimizers=(optimizer, None),
    )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_progress_callback_cls()(LABELS[name]))

    initial = trainer.evaluate()["eval_loss"]
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    history = trainer.state.log_history
    at_end = [h["eval_loss"] for h in history if "eval_loss" in h and h["step"] == trainer.state.global_step]
    final = at_end[-1] if at_end else trainer.evaluate()["eval_loss"]

    train_curve = [(h["step"], h["loss"]) for h in history if "loss" in h and "eval_loss" not in h]
    # log_history holds the initial evaluation as step 0 and the final one at the last step
    evals: dict[int, float] = {}
    for h in history:
        if "eval_loss" in h:
            evals[h["step"]] = h["eval_loss"]
    evals[0] = initial
    evals[steps] = final
    result = {
        "optimizer": name,
        "train_curve": train_curve,
        "eval_curve": sorted(evals.items()),
        "initial_val_loss": initial,
        "val_loss": final,
        "val_perplexity": math.exp(final) if final < 50 else float("inf"),
        "train_seconds": train_s,
        "steps": steps,
    }
    if groups is not None:
        result["groups"] = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in row.items()} for row in groups]
    return result
