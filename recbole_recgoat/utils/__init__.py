"""Helpers below everything else: files and digests (``io``), versions (``environment``), the model
registry, the C allocator, peak memory."""
