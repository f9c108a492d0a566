"""Root conftest: puts the checkout on sys.path (so tests import this tree's package)."""
