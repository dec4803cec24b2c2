"""The one exception every store backend raises."""


class StoreError(Exception):
    """A store problem with a message an operator can act on."""
