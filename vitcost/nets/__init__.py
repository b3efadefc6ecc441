"""Torch reference models built from the same specs as the analytic walkers, one file per family.

Submodules are named by the analytic op paths (`blocks.3.attn.qkv`), so a count of the module joins
the analytic estimate layer by layer. Importing this package imports torch; nothing on the analytic
path imports it.
"""

from vitcost.nets.build import build
from vitcost.nets.common import ATTN_MODES, set_attn_mode

__all__ = ["ATTN_MODES", "build", "set_attn_mode"]
