"""Entry file for verl's `custom_reward_function.path`.

verl loads this file by path (not as part of a package), so it puts its own
directory on `sys.path` before importing `reward_client`; no PYTHONPATH or
install is needed on the workers.

    custom_reward_function.path=clients/python/verl_reward_fn.py
    custom_reward_function.name=compute_score          # or compute_score_batch
                                                       # with reward_model.reward_manager=batch
"""

import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

from reward_client.verl_reward import compute_score, compute_score_batch  # noqa: E402

__all__ = ["compute_score", "compute_score_batch"]
