"""The training driver: the PEBBLE loop that joins envs, feedback, reward and agents.

``loop`` is the loop itself; the rest are the parts only it needs: the run config
(``config``) and its builder (``builder``), the replay buffer, the query-candidate pool,
checkpoints, metrics, evaluation, the k-NN exploration reward, the non-preference reward
sources (CLIP, code) and the run folder's layout (``run_files``).
"""

from rlvlmf.training.builder import build_config, default_run_name
from rlvlmf.training.config import TrainConfig
from rlvlmf.training.loop import RunSummary, Trainer, run_training
from rlvlmf.training.run_files import RunFiles

__all__ = ["RunFiles", "RunSummary", "TrainConfig", "Trainer", "build_config", "default_run_name", "run_training"]
