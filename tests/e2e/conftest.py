"""Browser journeys: the shared browser fixtures live in tests/browser.py (one Chromium per session,
whichever folder its tests are in); here every test commits its rows for the live server."""

import pytest


@pytest.fixture(autouse=True)
def _live_database(transactional_db):
    """The live server needs committed rows, so every browser test is transactional.

    Each such test empties every table when it ends; the post_migrate handler of
    the loyalty app puts the role groups back (see loyalty/apps.py).
    """
