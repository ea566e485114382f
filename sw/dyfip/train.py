"""Brevitas quantization-aware training: joint backbone + branch, then mask-aware stage B.

Joint training of the branch with the backbone (DESIGN.md: the biggest lever) and fine-tuning
of stage B under the masks it will see at run time, on the branch's own top-k sets.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .config import Config
from .data import Dataset, Split
from .decision import decide, sets_with_label, softmax
from .model import DyFiPNet, images_to_float

# A mask policy maps (branch logits, labels) of a batch to (subsets or None, per-layer masks).
MaskPolicy = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor | None, list[torch.Tensor]]]


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def augment(x: torch.Tensor, generator: torch.Generator, flip: bool, max_shift: int = 2,
            per_image: bool = False) -> torch.Tensor:
    """Random shifts of up to ``max_shift`` pixels (zero padded), one for the whole batch or
    one per image, and, if ``flip``, horizontal flips."""
    n, _, h, w = x.shape
    s = max_shift
    padded = F.pad(x, (s, s, s, s))
    if per_image:
        dy, dx = torch.randint(0, 2 * s + 1, (2, n, 1), generator=generator)
        rows, cols = dy + torch.arange(h), dx + torch.arange(w)  # (n, h), (n, w)
        out = padded[torch.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
        out = out.permute(0, 3, 1, 2)  # advanced indexing put the channel axis last
    else:
        dy, dx = torch.randint(0, 2 * s + 1, (2,), generator=generator).tolist()
        out = padded[:, :, dy:dy + h, dx:dx + w]
    if flip:
        flips = torch.rand(n, generator=generator) < 0.5
        out = torch.where(flips[:, None, None, None], out.flip(3), out)
    return out


def batches(split: Split, batch_size: int, generator: torch.Generator | None):
    """(float images, labels) mini-batches; shuffled when a generator is given."""
    n = len(split)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    images = torch.from_numpy(split.images)
    labels = torch.from_numpy(split.labels)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield images_to_float(images[idx]), labels[idx]


def restricted_log_softmax(logits: torch.Tensor, subsets: torch.Tensor) -> torch.Tensor:
    allowed = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, subsets, True)
    return F.log_softmax(logits.masked_fill(~allowed, float("-inf")), dim=1)


def _epochs(n: int, desc: str):
    return tqdm(range(n), desc=desc, leave=False)


def train_joint(model: DyFiPNet, data: Dataset, config: Config) -> list[dict]:
    """QAT of backbone and branch together: CE(final) + w * CE(branch). Returns the history:
    loss per epoch, validation accuracy every ``config.val_every`` epochs and at the end."""
    seed_everything(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps = config.epochs * ((len(data.train) + config.batch_size - 1) // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=max(steps, 1))
    history = []
    for epoch in _epochs(config.epochs, "train"):
        model.train()
        total = 0.0
        for x, y in batches(data.train, config.batch_size, gen):
            final, branch = model(augment(x, gen, config.flip, config.max_shift,
                                           config.shift_per_image))
            loss = F.cross_entropy(final, y) + config.branch_loss_weight * branch_loss(
                branch, final, y, config.branch_distill)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(y)
        history.append({"epoch": epoch, "loss": total / len(data.train)})
        if (epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs:
            history[-1]["val_accuracy"] = accuracy(model, data.val)  # no state changes
    if config.recalibrate_bn:
        recalibrate_batchnorm(model, data.train)
        history.append({"epoch": "bn_recalibrated", "val_accuracy": accuracy(model, data.val)})
    model.eval()
    return history


@torch.no_grad()
def recalibrate_batchnorm(model: DyFiPNet, split: Split, batch_size: int = 512) -> None:
    """Re-estimate every BatchNorm's running statistics as the average over the batches of
    ``split`` (unaugmented, one pass); after training they mostly reflect the last batches.
    Only the BatchNorms run in training mode, so nothing else (e.g. a quantizer still
    collecting its scale statistics) changes."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in norms]
    model.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
        bn.train()
    for x, _ in batches(split, batch_size, None):
        model(x)
    for bn, momentum in zip(norms, momenta):
        bn.momentum = momentum
    model.eval()


def distill_loss(student: torch.Tensor, teacher: torch.Tensor,
                 subsets: torch.Tensor | None = None, temperature: float = 2.0) -> torch.Tensor:
    """T^2 * KL(teacher || student) of softened logits, over ``subsets`` when given."""
    def log_probs(z: torch.Tensor) -> torch.Tensor:
        z = z / temperature
        if subsets is None:
            return F.log_softmax(z, 1)
        return restricted_log_softmax(z, subsets).clamp_min(-1e4)
    return temperature ** 2 * F.kl_div(log_probs(student), log_probs(teacher),
                                       reduction="batchmean", log_target=True)


def branch_loss(branch: torch.Tensor, final: torch.Tensor, labels: torch.Tensor,
                distill: float) -> torch.Tensor:
    """Cross-entropy plus ``distill`` x self-distillation from the (detached) final logits."""
    loss = F.cross_entropy(branch, labels)
    if distill > 0:
        loss = loss + distill * distill_loss(branch, final.detach())
    return loss


@torch.no_grad()
def accuracy(model: DyFiPNet, split: Split, batch_size: int = 512) -> float:
    model.eval()
    correct = 0
    for x, y in batches(split, batch_size, None):
        correct += int((model(x)[0].argmax(1) == y).sum())
    return correct / len(split)


@dataclass(frozen=True)
class FrozenOutputs:
    """What fine-tuning stage B never changes, once per training image (no augmentation):
    stage-A features, branch logits and the unpruned network's stage-B logits (teacher)."""

    features: torch.Tensor
    branch: torch.Tensor
    teacher: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def routed(self, tau: float) -> "FrozenOutputs":
        """The images the branch does not exit on at ``tau`` (``decision.decide``'s rule):
        the ones stage B sees at run time."""
        keep = torch.from_numpy(softmax(self.branch.numpy()).max(axis=1) < tau)
        if not keep.any():
            raise ValueError(f"the branch exits on every training image at tau={tau}: "
                             "nothing to fine-tune stage B on")
        return FrozenOutputs(self.features[keep], self.branch[keep], self.teacher[keep],
                             self.labels[keep])


@torch.no_grad()
def frozen_outputs(model: DyFiPNet, split: Split, batch_size: int = 512) -> FrozenOutputs:
    model.eval()
    parts = []
    for x, y in tqdm(batches(split, batch_size, None), desc="stage A + teacher", leave=False,
                     total=(len(split) + batch_size - 1) // batch_size):
        feats = model.features(x)
        parts.append((feats, model.branch_logits(feats), model.stage_b_logits(feats), y))
    return FrozenOutputs(*(torch.cat(t) for t in zip(*parts)))


def finetune_stage_b(model: DyFiPNet, data: Dataset, config: Config, policy: MaskPolicy,
                     epochs: int, desc: str = "fine-tune",
                     frozen: FrozenOutputs | None = None) -> DyFiPNet:
    """A copy of ``model`` whose stage B and head are trained under ``policy``'s masks.

    Stage A and the branch stay frozen (so the run-time decisions do not change), so their
    outputs and the teacher's are computed once (``frozen``, shareable between methods).
    With a subset from the policy the loss is cross-entropy restricted to that subset, plus
    distillation from the unpruned network on the same classes.
    """
    frozen = frozen_outputs(model, data.train) if frozen is None else frozen
    tuned = copy.deepcopy(model)
    seed_everything(config.seed + 1)
    gen = torch.Generator().manual_seed(config.seed + 1)
    params = list(tuned.stage_b.parameters()) + list(tuned.head.parameters())
    opt = torch.optim.Adam(params, lr=config.lr / 3)
    n = len(frozen.labels)
    steps = epochs * ((n + config.batch_size - 1) // config.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    for _ in _epochs(epochs, desc):
        tuned.eval()
        tuned.stage_b.train()
        tuned.head.train()
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, config.batch_size):
            idx = order[start:start + config.batch_size]
            y = frozen.labels[idx]
            subsets, masks = policy(frozen.branch[idx], y)
            logits = tuned.stage_b_logits(frozen.features[idx], masks)
            log_p = (F.log_softmax(logits, 1) if subsets is None
                     else restricted_log_softmax(logits, subsets))
            loss = F.nll_loss(log_p, y)
            if config.finetune_distill > 0:
                loss = loss + config.finetune_distill * distill_loss(
                    logits, frozen.teacher[idx], subsets)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    tuned.eval()
    return tuned


def candidate_sets(branch: torch.Tensor, labels: torch.Tensor, table, set_mass: float,
                   rng: np.random.Generator, temperature: float = 0.0) -> torch.Tensor:
    """The run-time candidate sets of the table's sizes, with the label forced in (and
    drawn sizes, see ``decision.sets_with_label``, when the sets are adaptive). With a
    ``temperature`` the classes are ranked by Gumbel-perturbed branch logits / temperature:
    sets drawn from the branch's own uncertainty, so that every mask sees training images."""
    logits = branch.double().numpy()
    if temperature > 0:
        logits = logits / temperature + rng.gumbel(size=logits.shape)
    return torch.from_numpy(sets_with_label(logits, labels.numpy(), table.k, table.k_max,
                                            set_mass, rng))


def dynamic_policy(table, set_mass: float = 1.0, seed: int = 0,
                   temperature: float = 0.0) -> MaskPolicy:
    """DyFiP: masks of the branch's own candidate set (label forced in), loss restricted
    to it."""
    rng = np.random.default_rng(seed)

    def policy(branch: torch.Tensor, labels: torch.Tensor):
        subsets = candidate_sets(branch, labels, table, set_mass, rng, temperature)
        masks = [torch.from_numpy(m).float() for m in table.batch_masks(subsets.numpy())]
        return subsets, masks
    return policy


def static_policy(table, restrict: bool, set_mass: float = 1.0, seed: int = 0,
                  temperature: float = 0.0) -> MaskPolicy:
    """The class-agnostic mask; with ``restrict`` (static+exit) the loss is restricted to
    the same candidate sets as DyFiP's."""
    rng = np.random.default_rng(seed)

    def policy(branch: torch.Tensor, labels: torch.Tensor):
        n = len(labels)
        masks = [torch.from_numpy(m).float().expand(n, -1) for m in table.static_masks]
        sets = (candidate_sets(branch, labels, table, set_mass, rng, temperature) if restrict
                else None)
        return sets, masks
    return policy


def check_decisions_frozen(model: DyFiPNet, tuned: DyFiPNet, images: np.ndarray, k: int,
                           tau: float) -> None:
    """Fine-tuning must not change the branch's decisions (same stage A and branch)."""
    with torch.no_grad():
        x = images_to_float(images[:64])
        a = decide(model.branch_logits(model.features(x)).numpy(), k, tau)
        b = decide(tuned.branch_logits(tuned.features(x)).numpy(), k, tau)
    if not (np.array_equal(a.exit, b.exit) and np.array_equal(a.subsets, b.subsets)):
        raise RuntimeError("fine-tuning changed stage A or the branch")
