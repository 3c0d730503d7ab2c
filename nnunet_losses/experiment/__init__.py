"""Paper experiments from one spec file: the matrix of nnU-Net commands, run here, or emitted for SLURM."""
from .config import Experiment, Run, load_experiment

__all__ = ["Experiment", "Run", "load_experiment"]
