"""The training engine: the step loop, minibatch sampling and bootstrap ensembles.

Example:
    >>> from mlegpipe.training import TrainLoop, MinibatchSampler, bootstrap_indices
"""

from mlegpipe.training.data import MinibatchSampler
from mlegpipe.training.ensemble import bootstrap_indices, train_ensemble
from mlegpipe.training.loop import TrainLoop, cosine_schedule, warmup_schedule

__all__ = ["MinibatchSampler", "TrainLoop", "bootstrap_indices", "cosine_schedule", "train_ensemble",
           "warmup_schedule"]
