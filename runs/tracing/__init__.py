"""Spans of runs: the process's tracer provider, the span processor that stores them, trace propagation."""
