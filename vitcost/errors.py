"""Errors a user can cause. The CLI turns them into one line on stderr and exit code 2."""


class VitcostError(Exception):
    """A user-facing error whose message is one complete sentence."""


class SpecError(VitcostError, ValueError):
    """An architecture spec or input size that cannot describe a real model."""
