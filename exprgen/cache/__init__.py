"""Compiled kernels kept: the content-addressed store, the standard kernel set, and prebuilt tiers."""
