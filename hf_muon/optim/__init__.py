"""The optimizer engine: muon (the Optimizer, a short staged step) over screen → rules → jobs → backends →
apply → adamw, with the state layout and dtype policy in state, group validation in validate, diagnostics
numbers in stats, and a slow float64 reference of the rule in reference."""
