"""The sales example: a deterministic data generator and a pipeline over it."""
