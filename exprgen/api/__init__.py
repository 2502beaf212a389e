"""The user's surface: ``Array`` and the NumPy-style functions that build graphs."""
