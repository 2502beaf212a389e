"""The intermediate representation: dtypes, the op registry loaded from ``ops/``, the graph of nodes, views,
and the NumPy interpreter that defines what every graph means."""
