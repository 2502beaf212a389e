"""Code generation: a kernel rendered into source from ``templates/`` and the ops' expressions."""
