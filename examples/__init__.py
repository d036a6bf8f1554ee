"""Example tasks loaded by default: they use local stand-ins for external services."""
