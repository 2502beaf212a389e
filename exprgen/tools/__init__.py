"""Tools over the pipeline: ``explain`` / ``to_dot`` and the ``exprgen`` command."""
