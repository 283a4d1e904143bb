"""The two-tower network in torch: built, trained with in-batch sampled softmax, exported.

Imported only by ``TwoTowerModel.fit`` (it needs torch, the ``deep`` extra): serving reads
the exported numpy arrays and never imports this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn import functional as F

from recloop.retrieval.interactions import Float32Array, IntArray, TrainingData


@dataclass(frozen=True)
class TowerSpec:
    """The network's shape and its training's hyper-parameters."""

    dim: int
    hidden: int
    temperature: float
    lr: float
    weight_decay: float
    epochs: int
    batch_size: int
    unknown_user_rate: float
    logq_correction: bool
    use_hard_negatives: bool
    seed: int
    threads: int
    n_devices: int
    n_categories: int
    device_dim: int
    category_dim: int
    age_dim: int
    age_buckets: int
    init_std: float


@dataclass(frozen=True)
class TowerInputs:
    """Per interaction, what the towers read (rows of ``data.interactions``)."""

    data: TrainingData
    histories: IntArray  # (n, history_len) recent item rows, padded with n_items
    category_rows: IntArray  # per item: 0 unknown, else 1 + category index
    ages: IntArray  # per item: its age bucket
    device_rows: IntArray  # per user: its device row
    hours: Float32Array  # (n, 2) hour of day of each interaction
    content: Float32Array | None  # (n_items, d) content vectors, or none


def train_towers(
    spec: TowerSpec, inputs: TowerInputs
) -> tuple[Float32Array, dict[str, Float32Array]]:
    """Build the towers, train them, and return the item vectors and the user tower's weights."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(spec.threads)
    try:
        return _train(spec, inputs)
    finally:
        torch.set_num_threads(previous_threads)


def _train(spec: TowerSpec, inputs: TowerInputs) -> tuple[Float32Array, dict[str, Float32Array]]:
    data = inputs.data
    histories, category_rows, ages = inputs.histories, inputs.category_rows, inputs.ages
    device_rows, content = inputs.device_rows, inputs.content
    inter = data.interactions
    n_users, n_items = inter.n_users, inter.n_items
    torch.manual_seed(spec.seed)
    rng = np.random.default_rng(spec.seed)

    def embedding(rows: int, width: int, padding: int | None = None) -> Any:
        layer = nn.Embedding(rows, width, padding_idx=padding)
        with torch.no_grad():
            nn.init.normal_(layer.weight, std=spec.init_std)
            if padding is not None:
                layer.weight[padding].zero_()
        return layer

    content_dim = 0 if content is None else content.shape[1]
    user_emb = embedding(n_users + 1, spec.dim)
    item_emb = embedding(n_items + 1, spec.dim, padding=n_items)
    device_emb = embedding(spec.n_devices + 1, spec.device_dim)
    category_emb = embedding(spec.n_categories + 1, spec.category_dim)
    age_emb = embedding(spec.age_buckets, spec.age_dim)
    user_in = nn.Linear(2 * spec.dim + spec.device_dim + 2, spec.hidden)
    user_out = nn.Linear(spec.hidden, spec.dim)
    item_in = nn.Linear(spec.dim + content_dim + spec.category_dim + spec.age_dim, spec.hidden)
    item_out = nn.Linear(spec.hidden, spec.dim)
    net = nn.ModuleList(
        [
            user_emb,
            item_emb,
            device_emb,
            category_emb,
            age_emb,
            user_in,
            user_out,
            item_in,
            item_out,
        ]
    )
    content_t = None if content is None else torch.from_numpy(content)
    category_t = torch.from_numpy(category_rows)
    age_t = torch.from_numpy(ages)

    def item_tower(rows: Any) -> Any:
        parts = [item_emb(rows)]
        if content_t is not None:
            parts.append(content_t[rows])
        parts += [category_emb(category_t[rows]), age_emb(age_t[rows])]
        hidden = F.relu(item_in(torch.cat(parts, dim=1)))
        return F.normalize(item_out(hidden), dim=1)

    def user_tower(users: Any, history: Any, devices: Any, hours: Any) -> Any:
        known = (history != n_items).sum(dim=1, keepdim=True).clamp(min=1)
        mean = item_emb(history).sum(dim=1) / known
        x = torch.cat([user_emb(users), mean, device_emb(devices), hours], dim=1)
        return F.normalize(user_out(F.relu(user_in(x))), dim=1)

    users_np = inter.users
    items_t = torch.from_numpy(inter.items)
    users_t = torch.from_numpy(users_np + 1)  # row 0 is the unknown user
    history_t = torch.from_numpy(histories)
    devices_t = torch.from_numpy(device_rows[users_np])
    hours_t = torch.from_numpy(inputs.hours)
    counts = np.bincount(inter.items, minlength=n_items).astype(np.float64)
    log_q = torch.from_numpy(np.log(np.maximum(counts, 1.0) / len(inter)).astype(np.float32))
    negatives = _negatives_by_user(data) if spec.use_hard_negatives else None

    optimizer = torch.optim.AdamW(net.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    n = len(inter)
    net.train()
    for _ in range(spec.epochs):
        order = rng.permutation(n)
        for start in range(0, n, spec.batch_size):
            rows_np = order[start : start + spec.batch_size]
            if len(rows_np) < 2:
                continue
            rows = torch.from_numpy(rows_np)
            users = users_t[rows]
            cold = torch.from_numpy(rng.random(len(rows_np)) < spec.unknown_user_rate)
            users = torch.where(cold, torch.zeros_like(users), users)
            u = user_tower(users, history_t[rows], devices_t[rows], hours_t[rows])
            pos = items_t[rows]
            logits = u @ item_tower(pos).T / spec.temperature
            if spec.logq_correction:
                logits = logits - log_q[pos][None, :]
            collide = pos[None, :] == pos[:, None]
            collide.fill_diagonal_(False)
            logits = logits.masked_fill(collide, -math.inf)
            if negatives is not None:
                hard, has = _sample_negatives(negatives, users_np[rows_np], rng)
                hard_t = torch.from_numpy(hard)
                extra = (u * item_tower(hard_t)).sum(dim=1) / spec.temperature
                if spec.logq_correction:
                    extra = extra - log_q[hard_t]
                valid = torch.from_numpy(has) & (hard_t != pos)
                extra = extra.masked_fill(~valid, -math.inf)
                logits = torch.cat([logits, extra[:, None]], dim=1)
            loss: Any = F.cross_entropy(logits, torch.arange(len(rows_np)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    net.eval()
    with torch.no_grad():
        items = item_tower(torch.arange(n_items)).numpy().astype(np.float32)
        exported = {
            "user_emb": user_emb.weight,
            "history_emb": item_emb.weight[:n_items],
            "device_emb": device_emb.weight,
            "w1": user_in.weight.T,
            "b1": user_in.bias,
            "w2": user_out.weight.T,
            "b2": user_out.bias,
        }
        weights = {
            name: np.ascontiguousarray(t.detach().numpy(), dtype=np.float32)
            for name, t in exported.items()
        }
    return items, weights


def _negatives_by_user(data: TrainingData) -> tuple[IntArray, IntArray, IntArray] | None:
    """Shown negatives grouped by user: (items sorted by user, start per user, count)."""
    if data.shown_negatives is None or len(data.shown_negatives[0]) == 0:
        return None
    users, items = (np.asarray(a, dtype=np.int64) for a in data.shown_negatives)
    n_users = data.interactions.n_users
    ok = (users >= 0) & (users < n_users) & (items >= 0) & (items < data.interactions.n_items)
    users, items = users[ok], items[ok]
    order = np.argsort(users, kind="stable")
    count = np.bincount(users, minlength=n_users).astype(np.int64)
    start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    return items[order], start, count


def _sample_negatives(
    negatives: tuple[IntArray, IntArray, IntArray],
    users: IntArray,
    rng: np.random.Generator,
) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    """One shown negative per row (item 0 where the user has none) and which rows have one."""
    items, start, count = negatives
    n = count[users]
    has = n > 0
    pick = start[users] + np.floor(rng.random(len(users)) * np.maximum(n, 1)).astype(np.int64)
    hard = np.where(has, items[np.minimum(pick, max(len(items) - 1, 0))], 0)
    return hard.astype(np.int64), has
