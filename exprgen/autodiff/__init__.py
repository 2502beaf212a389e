"""Reverse-mode differentiation: gradients as more graph in the same op language."""
