"""Newton-Schulz math: pure functions, no optimizer state.

coefficients (Keller, Polar Express, custom schedules; the scalar map) → newton_schulz (the iteration and the
dtype policy) → batching (same-shape matrices stacked, one call each) with blocks (fused-weight splits);
spectral_power (U Σ^p Vᵀ), schedule (layer-aware step counts), cost (THE FLOP formula), reference (exact SVD
and a slow float64 iteration, for tests).
"""
