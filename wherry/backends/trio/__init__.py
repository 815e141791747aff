"""The trio backend: trio streams and nurseries behind the same drivers (docs/discussion/backends.md)."""
