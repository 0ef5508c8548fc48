"""Sec. 3.1's learning-rate schedule: "decreased by a factor of 10 when the validation set
accuracy stopped improving. In total, the learning rate was decreased 3 times, and the
learning was stopped after 370K iterations (74 epochs)".

torch's ReduceLROnPlateau watches the held-out error, or its cross-entropy (train.plateau_on;
vggrepro.data.holdout; never the val split the tables report): it tolerates `patience` epochs without improvement and divides the
rate by 1 / factor on the next one (so patience 2 decreases after 3 such epochs in a row). The run stops when the error plateaus once more after the last allowed decrease,
or at max_epochs, whichever comes first.

A run with lr_steps (StepSchedule) instead has the rate divided after the epochs it names and
trains to max_epochs: a departure the report lists. A run capped well short of the paper's 74
epochs rarely reaches the plateau the paper's rule waits for while its error still falls, so it
keeps its initial rate for most of its epochs (the earlier CPU default's A: its one decrease came
at epoch 47 of 48).
"""

from __future__ import annotations

import torch


class PlateauSchedule:
    def __init__(self, optimizer: torch.optim.Optimizer, *, patience: int, factor: float, max_decreases: int) -> None:
        # threshold 0: any lower value is an improvement (the paper names no margin)
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=factor, patience=patience, threshold=0.0
        )
        self.optimizer, self.max_decreases, self.decreases = optimizer, max_decreases, 0

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def step(self, holdout: float) -> bool:
        """Takes the epoch's held-out error or loss; True when training should stop."""
        before = self.lr
        self.plateau.step(holdout)
        if self.lr < before:
            self.decreases += 1
            if self.decreases > self.max_decreases:  # the plateau after the last decrease
                for group in self.optimizer.param_groups:
                    group["lr"] = before  # the rate it stopped at, for the log and a resume
                return True
        return False

    def state_dict(self) -> dict:
        return {"plateau": self.plateau.state_dict(), "decreases": self.decreases}

    def load_state_dict(self, state: dict) -> None:
        self.plateau.load_state_dict(state["plateau"])
        self.decreases = state["decreases"]


class StepSchedule:
    """The rate divided by 1 / factor after each epoch of `steps` (torch's MultiStepLR: after
    epoch 16 of steps [16, 20], epoch 17 trains at a tenth of the rate); never stops a run."""

    def __init__(self, optimizer: torch.optim.Optimizer, *, steps: tuple[int, ...], factor: float) -> None:
        self.steps = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(steps), gamma=factor)
        self.optimizer = optimizer

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def step(self, holdout: float) -> bool:
        """Called once an epoch, like PlateauSchedule.step; the held-out number is only logged."""
        self.steps.step()
        return False

    def state_dict(self) -> dict:
        return {"steps": self.steps.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.steps.load_state_dict(state["steps"])


def for_run(optimizer: torch.optim.Optimizer, train: dict, lr_steps: tuple[int, ...]) -> PlateauSchedule | StepSchedule:
    """The run's schedule: its lr_steps where it has some, else Sec. 3.1's plateau rule."""
    if lr_steps:
        return StepSchedule(optimizer, steps=lr_steps, factor=train["lr_factor"])
    return PlateauSchedule(
        optimizer, patience=train["lr_patience"], factor=train["lr_factor"], max_decreases=train["lr_decreases"]
    )
