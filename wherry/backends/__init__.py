"""Event-loop adapters. Each one implements the Runtime contract of ``wherry.contracts`` and
the hooks of the shared serve sequence (``serving.py``); docs/discussion/backends.md.

The loop primitives code above the backends may use (``primitives.py``, with each library's own in
``asyncio/primitives.py`` and ``trio/primitives.py``) live here too, as neutral ground: so this
``__init__`` and those of ``asyncio/`` and ``trio/`` import nothing, and importing the primitives
loads no backend (``tests/test_layers.py``)."""
