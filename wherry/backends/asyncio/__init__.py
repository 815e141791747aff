"""The asyncio backend (uvloop when installed): the callback Protocol API, the fast path."""
