"""What the optimizer receives from a model: routing (labels each tensor muon / adamw / frozen), groups
(param_groups), fused (block splits of fused projections from the HF config), scaling (update scale modes),
layers (depth and layer type from a name)."""
