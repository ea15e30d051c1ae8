"""One trainer for every model: config, the loop, checkpoints, distributed wrapping, and task plug-ins."""

from kinetoscope.train.config import TrainConfig, load_train_config
from kinetoscope.train.loop import Trainer, TrainingStopped, train

__all__ = ["TrainConfig", "Trainer", "TrainingStopped", "load_train_config", "train"]
