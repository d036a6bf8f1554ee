"""Realtime for any client: server-sent events, scoped public tokens, and who may read what."""
