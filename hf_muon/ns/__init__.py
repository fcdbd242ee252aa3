"""Newton-Schulz math: pure functions, no optimizer state.

coefficients (Keller, Polar Express, the ℓ=1e-2 ladder, custom schedules; the scalar map) → newton_schulz (the
iteration, the dtype policy, the method choice) with gram (the same iteration in Gram space) → batching
(same-shape matrices stacked, one call each) with blocks (fused-weight splits);
spectral_power (U Σ^p Vᵀ), schedule (layer-aware step counts), cost (THE FLOP formulas), reference (exact SVD
and a slow float64 iteration, for tests); workspace (CPU scratch reused across steps) and kernels (the compiled
cast into the stack and weight write, with their eager fallbacks). The lowest floor also holds what the layers
above share: scaling (the update scale modes α, used by config, routing and the optimizer) and tensors (DTensor
test, the flat-parameter hint).
"""
