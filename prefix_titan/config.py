"""Job-config extension: the `[prefix]` section (`[job] custom_config_module = "prefix_titan.config"`)."""

from dataclasses import dataclass, field

from .targets import ObjectiveSpec


@dataclass
class Prefix:
    objective: str = "prefix"
    """Training target: ce | label_smoothing | prefix"""

    tau: float = 0.5
    """Softmax temperature of the prefix scores (finite, > 0)"""

    normalize: bool = False
    """Score len(t)/len(s) instead of len(t)"""

    support: str = "prefix"
    """prefix: softmax over the prefix set only; vocab: every other token scores 0 (weight e^0)"""

    epsilon: float = 0.1
    """Label-smoothing mass for objective = label_smoothing, in [0, 1)"""

    def spec(self) -> ObjectiveSpec:
        return ObjectiveSpec(self.objective, self.tau, self.normalize, self.support, self.epsilon)


@dataclass
class JobConfig:
    prefix: Prefix = field(default_factory=Prefix)
