"""The trio backend: trio streams and nurseries behind the same drivers (docs/discussion/backends.md);
and trio's loop primitives (``primitives.py``). Imports nothing: see ``wherry.backends``."""
