"""Running: plans built from the stages above, cached, bound to leaves and launched; the buffer pool."""
