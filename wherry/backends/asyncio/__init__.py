"""The asyncio backend (uvloop when installed): the callback Protocol API, the fast path; and
asyncio's loop primitives (``primitives.py``). Imports nothing: see ``wherry.backends``."""
