"""The one base class of errors whose messages are meant for the person using SegDemo: the CLI
and the dashboard show them as they are, without a traceback. Imports nothing of ours, so every
module can derive from it."""
from __future__ import annotations


class SegDemoError(Exception):
    """A problem the user can act on; the message names it and what to do."""
