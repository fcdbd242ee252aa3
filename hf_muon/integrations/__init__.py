"""Thin adapters to the HF stack (transformers, TRL, accelerate, DeepSpeed); the core never imports them."""
