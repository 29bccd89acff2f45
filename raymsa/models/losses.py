"""Auxiliary losses shared by the models. Each returns an unweighted scalar; the weights live in the
model configs (they are what the searches tune), the training loop multiplies.

Everything here must stay finite for any batch the missingness module can produce: an empty
weight sum, a batch of one sample, a constant label column.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-6


def gaussian_bin_logits(score: Tensor, centers: Tensor, tau: float) -> Tensor:
    """Logits over sentiment bins for a scalar score: -(s - c_k)^2 / tau.

    Turns a regression output into a distribution so that it can be distilled with a temperature;
    a smaller tau gives a sharper distribution around the score.
    """
    return -(score.unsqueeze(-1) - centers) ** 2 / tau  # (B, K)


def kl_teacher_student(teacher_logits: Tensor, student_logits: Tensor) -> Tensor:
    """KL(softmax(teacher) || softmax(student)), mean over rows; no gradient into the teacher."""
    t = F.log_softmax(teacher_logits.detach(), dim=-1)
    s = F.log_softmax(student_logits, dim=-1)
    return (t.exp() * (t - s)).sum(-1).mean()


def label_bins(labels: Tensor, n_bins: int, score_range: float) -> Tensor:
    """(B,) int64 class of each label: [-R, R] cut into n_bins equal steps, rounded (Acc-7 for R=3,
    n_bins=7)."""
    y = labels.clamp(-score_range, score_range)
    return torch.round((y + score_range) / (2 * score_range) * (n_bins - 1)).long()


def pairwise_cosine_distance(parts: list[Tensor], avail: Tensor) -> Tensor:
    """Mean of 1 - cos(x_m, x_n) over modality pairs observed together in a sample.

    parts: one (B, D) tensor per modality; avail: (B, M) weights (0 for a missing modality), so a
    missing modality's part is never pulled towards the others by this loss.
    """
    total, weight = parts[0].new_zeros(()), parts[0].new_zeros(())
    for i in range(len(parts)):
        for j in range(i + 1, len(parts)):
            w = avail[:, i] * avail[:, j]  # (B,)
            total = total + (w * (1 - F.cosine_similarity(parts[i], parts[j], dim=-1, eps=EPS))).sum()
            weight = weight + w.sum()
    return total / weight.clamp_min(1.0)


def subspace_overlap(x: Tensor, y: Tensor) -> Tensor:
    """Soft orthogonality of two sets of batch features (MISA's difference loss): squared Frobenius
    norm of Xc^T Yc with centred, L2-normalised rows, divided by D^2. 0 when the two parts span
    orthogonal directions over the batch."""
    xc = F.normalize(x - x.mean(0, keepdim=True), dim=-1, eps=EPS)  # (B, D)
    yc = F.normalize(y - y.mean(0, keepdim=True), dim=-1, eps=EPS)  # (B, D)
    return (xc.t() @ yc).pow(2).sum() / (x.shape[-1] * y.shape[-1])


def label_correlation(x: Tensor, labels: Tensor) -> Tensor:
    """Mean over feature dims of the squared Pearson correlation with the label, over the batch.

    0 when no dimension of x linearly predicts the label; finite for a constant column (the
    variances are floored)."""
    xc = x - x.mean(0, keepdim=True)  # (B, D)
    yc = (labels - labels.mean()).unsqueeze(-1)  # (B, 1)
    cov = (xc * yc).mean(0)  # (D,)
    var = xc.pow(2).mean(0) * yc.pow(2).mean()  # (D,)
    return (cov.pow(2) / (var + EPS)).mean()


class LabelReadout(nn.Module):
    """The best linear read-out of the label from x (B, D), estimated across training batches, and
    the penalty that keeps x from carrying it.

    The squared correlation of each dim with the label alone (label_correlation) can be near its
    floor in every dim while a read-out of all dims together predicts the label well (many weakly
    correlated dims): the penalty must see the joint read-out. A learned probe trained by the run's
    optimiser lagged far behind N (lr 1e-3: its read-out's squared correlation with the label stayed
    ~0.01 in training batches where a ridge found R^2 0.59 on test),
    so the read-out here is the ridge solution of running moments (exponential moving averages over
    batches, detached): beta = (Cov_x + ridge * mean var_x * I)^-1 Cov_xy. The penalty is the batch's
    squared correlation of x beta with the label, beta fixed: it moves x only; floor about 1/B."""

    def __init__(self, dim: int, momentum: float = 0.95, ridge: float = 0.1):
        super().__init__()
        self.momentum, self.ridge = momentum, ridge
        # [mean_x (D), mean_y, E[x x^T] (D, D), E[x y] (D)] and how much of the EMA is filled
        self.register_buffer("mx", torch.zeros(dim))
        self.register_buffer("my", torch.zeros(()))
        self.register_buffer("sxx", torch.zeros(dim, dim))
        self.register_buffer("sxy", torch.zeros(dim))
        self.register_buffer("filled", torch.zeros(()))

    @torch.no_grad()
    def update(self, x: Tensor, labels: Tensor) -> None:
        x, y, m = x.detach().float(), labels.detach().float(), self.momentum
        for buf, val in ((self.mx, x.mean(0)), (self.my, y.mean()), (self.sxx, x.t() @ x / x.shape[0]),
                         (self.sxy, x.t() @ y / x.shape[0])):
            buf.mul_(m).add_(val, alpha=1 - m)
        self.filled.mul_(m).add_(1 - m)

    def beta(self) -> Tensor:
        """(D,) the ridge read-out direction (zeros before the first update)."""
        f = self.filled.clamp_min(EPS)
        mx, my = self.mx / f, self.my / f
        cov = self.sxx / f - torch.outer(mx, mx)
        cxy = self.sxy / f - mx * my
        lam = self.ridge * cov.diagonal().mean().clamp_min(EPS)
        return torch.linalg.solve(cov + lam * torch.eye(cov.shape[0], device=cov.device), cxy)

    def penalty(self, x: Tensor, labels: Tensor) -> Tensor:
        if self.training:
            self.update(x, labels)
        return label_correlation((x @ self.beta().detach().to(x.dtype)).unsqueeze(-1), labels)

    def forward(self, x: Tensor) -> Tensor:
        """(B,) the read-out of x (for diagnostics)."""
        return x @ self.beta().to(x.dtype)


def relation_kl(teacher: Tensor, student: Tensor, tau: float) -> Tensor:
    """Align the distributions of two views' representations over the batch: per sample, the
    softmax over its cosine similarities to the other samples (temperature tau), KL(teacher ||
    student). Self-similarity is left out, since it is 1 in both views and would dominate."""
    b = teacher.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=teacher.device)

    def logits(f: Tensor) -> Tensor:
        f = F.normalize(f, dim=-1, eps=EPS)
        return (f @ f.t() / tau).masked_fill(eye, -1e4)  # (B, B)

    return kl_teacher_student(logits(teacher), logits(student))


def variance_hinge(x: Tensor, gamma: float = 1.0) -> Tensor:
    """VICReg's variance term (Bardes et al., ICLR 2022): mean over dims of max(0, gamma - std_batch).

    0 when every dimension of x (B, D) varies over the batch by at least gamma; grows as the rows
    collapse towards one vector. A batch of one row has no spread to measure: 0."""
    if x.shape[0] < 2:
        return x.sum() * 0.0
    std = torch.sqrt(x.var(dim=0) + 1e-4)  # (D,)
    return F.relu(gamma - std).mean()


def spread(x: Tensor) -> Tensor:
    """Anti-collapse term of a part x (B, D): VICReg's variance hinge plus the squared norm of the
    batch mean of the L2-normalised rows, ||mean_i x_i/|x_i| ||², which is the mean cosine between
    samples up to O(1/B) (Wang & Isola 2020's uniformity in its simplest form). The hinge alone
    lets every row share one large offset (cosine ~1 with unit spread); the second term removes it."""
    if x.shape[0] < 2:
        return x.sum() * 0.0
    centroid = F.normalize(x, dim=-1, eps=EPS).mean(0)  # (D,)
    return variance_hinge(x) + centroid.pow(2).sum()


def cross_modal_info_nce(parts: list[Tensor], avail: Tensor, tau: float) -> Tensor:
    """Symmetric InfoNCE between modalities: for each pair (m, n), sample i's part of m must pick
    sample i's part of n among the batch (cosine / tau), and back. Only samples with both modalities
    present are anchors or candidates.

    Unlike 1 - cos(x_m, x_n), which a constant minimises, this needs parts that tell samples apart:
    the cosine between different samples' parts is pushed down. parts: (B, D) per modality; avail:
    (B, M) weights, 0 for a missing modality. 0 when no pair has two samples present together."""
    total, weight = parts[0].new_zeros(()), parts[0].new_zeros(())
    for i in range(len(parts)):
        for j in range(i + 1, len(parts)):
            keep = (avail[:, i] * avail[:, j]) > 0  # (B,)
            if int(keep.sum()) < 2:
                continue
            a = F.normalize(parts[i][keep], dim=-1, eps=EPS)  # (b, D)
            b = F.normalize(parts[j][keep], dim=-1, eps=EPS)  # (b, D)
            logits = a @ b.t() / tau  # (b, b)
            target = torch.arange(logits.shape[0], device=logits.device)
            n = float(logits.shape[0])
            total = total + n * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
            weight = weight + n
    return total / weight.clamp_min(1.0)


def mean_pairwise_cosine(x: Tensor) -> float:
    """Mean cosine between different rows of x (B, D): ~1 when the rows collapsed to one direction.
    A diagnostic (docs/models.md, the collapse measures), not a loss."""
    f = F.normalize(x.detach().float(), dim=-1, eps=EPS)
    b = f.shape[0]
    if b < 2:
        return float("nan")
    s = f @ f.t()  # (B, B)
    return float((s.sum() - s.diagonal().sum()) / (b * (b - 1)))
