"""What the driver returns: per-image results and batch results with timings."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..tables import set_key

EXIT, PRUNED, FULL = "exit", "pruned", "full"


@dataclass(frozen=True)
class Result:
    """One image: its class, the path taken, the subset / mask used and its timings."""

    cls: int
    path: str  # "exit" (branch decided), "pruned" (stage B under mask(S)), "full"
    subset: tuple[int, ...] | None
    mask: np.ndarray | None  # uint8 (sum F,) filter enables streamed to stage B
    confidence: float
    model_cycles: int  # modelled accelerator cycles of this image's path
    timings: dict[str, float]


@dataclass
class Results:
    """A batch: arrays over images plus wall-clock and modelled timings.

    ``timings`` (seconds, measured on this host): ``stage_a_s``, ``host_s`` (branch +
    decision + mask lookup), ``stage_b_s``, ``total_s``; ``model_s`` is the modelled
    accelerator time of the batch at the bitstream clock (sum of per-image latencies);
    with the simulated board, ``device_model_s`` is what the simulated device reports.
    """

    classes: np.ndarray  # int (N,)
    exited: np.ndarray  # bool (N,)
    branch_pred: np.ndarray  # int (N,)
    confidence: np.ndarray  # float (N,)
    subsets: np.ndarray  # int (N, k_max): candidate sets, padded (also for exits)
    masks: np.ndarray  # uint8 (N, sum F): mask streamed (all zero for exits)
    model_cycles: np.ndarray  # int (N,)
    logits: np.ndarray  # float (N, classes): stage-B integer logits (NaN rows for exits)
    clk_ns: float
    timings: dict[str, float] = field(default_factory=dict)
    path_name: str = PRUNED

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def paths(self) -> np.ndarray:
        return np.where(self.exited, EXIT, self.path_name)

    @property
    def model_us(self) -> np.ndarray:
        return self.model_cycles * self.clk_ns / 1000.0

    @property
    def host_us_per_image(self) -> float:
        return 1e6 * self.timings.get("host_s", 0.0) / max(1, len(self))

    def accuracy(self, labels: np.ndarray) -> float:
        return float(np.mean(self.classes == np.asarray(labels)))

    def __getitem__(self, i: int) -> Result:
        n = max(1, len(self))
        exited = bool(self.exited[i])
        return Result(int(self.classes[i]), str(self.paths[i]),
                      None if exited else set_key(self.subsets[i]),
                      None if exited else self.masks[i], float(self.confidence[i]),
                      int(self.model_cycles[i]),
                      {k: v / n for k, v in self.timings.items()})

    def summary(self) -> dict:
        """JSON-friendly figures of the batch."""
        n = max(1, len(self))
        return {"images": len(self), "exit_rate": float(np.mean(self.exited)) if len(self)
                else 0.0, "model_cycles_avg": float(np.mean(self.model_cycles)) if len(self)
                else 0.0, "model_cycles_max": int(self.model_cycles.max(initial=0)),
                "model_us_avg": float(np.mean(self.model_us)) if len(self) else 0.0,
                "host_us_per_image": self.host_us_per_image,
                "wall_ms_per_image": 1e3 * self.timings.get("total_s", 0.0) / n,
                **{k: float(v) for k, v in self.timings.items()}}
