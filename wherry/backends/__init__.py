"""Event-loop adapters. Each one implements the Runtime contract of ``wherry.connection.context`` and
the hooks of the shared serve sequence (``serving.py``); docs/discussion/backends.md."""
