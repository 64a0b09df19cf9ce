"""Code only the tests use: small data writers and hand-made scenes that exercise the product
without belonging to it. ``test/`` is on ``sys.path`` (pytest inserts the folder of
``test/conftest.py``), so tests import ``helpers.<module>``."""
