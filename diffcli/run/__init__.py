"""Doing it: pipeline loading, levers, the sampling loop, items to batches to sinks, ranks, threads."""
