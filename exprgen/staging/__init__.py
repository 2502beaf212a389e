"""Staging: a function traced once into a graph and replayed (``ex.jit``)."""
