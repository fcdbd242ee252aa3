"""The hf_muon benchmarks: thin ``bench_*.py`` scripts over one set of shared parts.

Parts, in the order a run uses them::

    machine.py      what ran it (CPU model and flags, torch threads and version, ...), the busy-machine check,
                    other processes' CPU use during a run
    models.py       the model registry (every benchmark model and its tiny variant)
    peers.py        the optimizer registry (torch AdamW, torch.optim.Muon, Keller's muon, heavyball,
                    pytorch_optimizer, hf_muon variants; peers that cannot run here, with the reason)
    timing.py       the one timing protocol: warmup, interleaved A/B/A/B rounds, medians
    stepping.py     optimizer.step() on fixed gradients (bench_step, bench_scaling)
    ns_floor.py     Newton-Schulz throughput against the bare matmul floor (bench_step)
    training.py     the convergence benchmarks' settings over the lab's data and loop
                    (hf_muon.lab.research: text_blocks, fit)
    cli.py          flags, start-up, the run record, publish / regenerate
    reports/        one report per benchmark, written from its results JSON alone

Scripts: ``bench_step.py``, ``bench_trainer.py``, ``bench_distributed.py``, ``bench_convergence.py``,
``bench_scaling.py``, ``bench_variants.py`` (each runs as ``python benchmarks/<script>`` or ``python -m benchmarks.<script>``) and
``run_all.py`` (all of them; ``--report-only`` rewrites RESULTS.md from the committed JSON).
"""
