"""Thin adapters to the HF stack (transformers, TRL, accelerate); the core never imports them."""
