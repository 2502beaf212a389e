"""Backends: each turns rendered source into a callable kernel (compile, load, call)."""
