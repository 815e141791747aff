"""Event-loop adapters. Each one implements the Runtime contract of ``wherry.server.context``."""
