"""A small trainer around ``RobustLoss``: warm-up, eps/kappa ramps, AdamW, evaluation.

The schedule is the QA-IBP authors' recipe: the first ``warmup`` fraction of the steps is plain
quantization-aware training (kappa = 0); eps and kappa then grow linearly from 0 and reach their
final values at ``ramp_end`` (90%) of the steps, and stay there. ``kappa = 0`` throughout gives
plain QAT (the twin the report compares against).

For a loop of your own, use ``RobustLoss`` directly and ``Schedule`` for the ramps::

    loss_fn = RobustLoss(model)
    sched = Schedule(total_steps, eps=2 / 256, kappa=0.5)
    for step, (x, y) in enumerate(batches):
        terms = loss_fn(x, y, *sched(step))
        opt.zero_grad(); terms.loss.backward(); opt.step()
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from .layers import QNN
from .loss import RobustLoss


@dataclass
class Schedule:
    """step -> (eps, kappa)."""

    total_steps: int
    eps: float
    kappa: float
    warmup: float = 0.1
    ramp_end: float = 0.9

    def __post_init__(self):
        if not 0 <= self.warmup < self.ramp_end <= 1:
            raise ValueError(f"need 0 <= warmup < ramp_end <= 1, got {self.warmup}, {self.ramp_end}")

    def __call__(self, step: int) -> Tuple[float, float]:
        start, end = self.warmup * self.total_steps, self.ramp_end * self.total_steps
        if step < start or self.kappa == 0:
            return 0.0, 0.0
        t = min(1.0, (step - start + 1) / max(end - start, 1.0))
        return self.eps * t, self.kappa * t


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    eps: float = 2 / 256        # final training radius, input units (k pixel levels: k / 256)
    kappa: float = 0.5          # final weight of the robust hinge; 0: plain QAT
    margin: float = 0.2
    warmup: float = 0.1
    ramp_end: float = 0.9
    method: str = "ibp"         # ibp | crown-ibp
    seed: int = 0


@dataclass
class EpochRecord:
    epoch: int
    eps: float
    kappa: float
    loss: float
    ce: float
    hinge: float
    train_acc: float
    seconds: float
    test: Dict[str, float] = field(default_factory=dict)


def batches(x: Tensor, y: Tensor, batch_size: int, gen: torch.Generator):
    perm = torch.randperm(x.shape[0], generator=gen)
    for i in range(0, x.shape[0], batch_size):
        idx = perm[i:i + batch_size]
        yield x[idx], y[idx]


@torch.no_grad()
def evaluate(model: QNN, x: Tensor, y: Tensor, eps_list: List[float], method: str = "ibp",
             batch_size: int = 500, loss_fn: Optional[RobustLoss] = None) -> Dict[str, float]:
    """Clean accuracy and, per eps, the fraction of samples certified (correct and every
    margin's bound > 0) by ``method`` (or by ``loss_fn``'s, reusing its BoundedModule); keys
    "acc" and "cert@<eps>"."""
    loss_fn = loss_fn if loss_fn is not None else RobustLoss(model, method=method)
    device = next(model.parameters()).device
    correct, cert = 0, {e: 0 for e in eps_list}
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        correct += int((model(xb).argmax(dim=1) == yb).sum())
        for e in eps_list:
            cert[e] += int(loss_fn.certified(xb, yb, e).sum()) if e > 0 else 0
    n = max(int(x.shape[0]), 1)
    out = {"acc": correct / n}
    out.update({f"cert@{e:g}": cert[e] / n for e in eps_list if e > 0})
    return out


def train(model: QNN, x: Tensor, y: Tensor, config: TrainConfig,
          eval_data: Optional[Tuple[Tensor, Tensor]] = None,
          on_step: Optional[Callable[[Dict[str, float]], None]] = None,
          progress: bool = True) -> List[EpochRecord]:
    """Train ``model`` in place on (x, y); returns one record per epoch (with test accuracy and
    certified accuracy at the final eps when ``eval_data`` is given). Deterministic for a
    given ``config.seed`` on CPU."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    device = next(model.parameters()).device
    steps_per_epoch = (x.shape[0] + config.batch_size - 1) // config.batch_size
    sched = Schedule(steps_per_epoch * config.epochs, config.eps, config.kappa,
                     config.warmup, config.ramp_end)
    loss_fn = RobustLoss(model, method=config.method, margin=config.margin)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    bar = _progress(config.epochs * steps_per_epoch, progress)
    history, step = [], 0
    try:
        for epoch in range(config.epochs):
            model.train()
            t0, sums, n_seen, n_correct = time.monotonic(), [0.0, 0.0, 0.0], 0, 0
            for xb, yb in batches(x, y, config.batch_size, gen):
                xb, yb = xb.to(device), yb.to(device)
                eps, kappa = sched(step)
                terms = loss_fn(xb, yb, eps, kappa)
                opt.zero_grad(set_to_none=True)
                terms.loss.backward()
                opt.step()
                step += 1
                k = xb.shape[0]
                for j, v in enumerate((terms.loss.detach(), terms.ce, terms.hinge)):
                    sums[j] += float(v) * k
                n_seen += k
                n_correct += int((terms.logits.argmax(dim=1) == yb).sum())
                info = dict(step=step, eps=eps, kappa=kappa, loss=float(terms.loss.detach()),
                            acc=n_correct / n_seen)
                if terms.certified is not None:
                    info["cert"] = float(terms.certified.float().mean())
                if on_step is not None:
                    on_step(info)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{info['loss']:.3f}",
                                    acc=f"{info['acc']:.3f}", cert=f"{info.get('cert', 0):.2f}",
                                    refresh=False)
            rec = EpochRecord(epoch + 1, eps, kappa, sums[0] / n_seen, sums[1] / n_seen,
                              sums[2] / n_seen, n_correct / n_seen, time.monotonic() - t0)
            if eval_data is not None:
                model.eval()
                rec.test = evaluate(model, *eval_data, [config.eps], loss_fn=loss_fn)
                if bar is not None:
                    bar.write(_epoch_line(rec))
            history.append(rec)
    finally:
        if bar is not None:
            bar.close()
    return history


def _epoch_line(rec: EpochRecord) -> str:
    test = "  ".join(f"test {k} {v:.3f}" for k, v in rec.test.items())
    return (f"epoch {rec.epoch:3d}  eps {rec.eps:.4f}  kappa {rec.kappa:.2f}  loss {rec.loss:.3f}  "
            f"train acc {rec.train_acc:.3f}  {test}  ({rec.seconds:.1f} s)")


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="step", dynamic_ncols=True)


def history_dicts(history: List[EpochRecord]) -> List[dict]:
    return [asdict(r) for r in history]
