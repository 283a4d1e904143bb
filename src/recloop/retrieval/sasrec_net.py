"""The SASRec network in torch: built, trained on shifted sequences, exported to numpy.

Imported only by ``SASRecModel.fit`` (it needs torch, the ``deep`` extra): serving runs
``recloop.retrieval.sasrec.encode_sequence`` on the exported arrays and never imports this
module.

Training is "shifted sequence": a window of a user's items ``w`` is read as input
``w[:-1]`` and target ``w[1:]``, so every position predicts the item that came next, seeing
only the items before it (causal attention). The loss is a softmax over the target and a
set of sampled negatives shared by the whole batch, or over the full catalogue.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from recloop.retrieval.interactions import Float32Array, FloatArray, IntArray

# Batches are cut from shuffled chunks of this many batches, sorted by length inside each
# chunk: sequences are mostly short, and padding every batch to max_len wastes most steps.
_CHUNK_BATCHES = 32
_POPULARITY_POWER = 0.75  # word2vec's unigram power: popular, but not only the most popular


@dataclass(frozen=True)
class NetSpec:
    """The network's shape."""

    n_items: int
    dim: int
    blocks: int
    heads: int
    max_len: int
    dropout: float
    ln_eps: float  # the LayerNorms' epsilon, the same as the numpy encoder's


@dataclass(frozen=True)
class TrainSpec:
    """The training's hyper-parameters (see ``SASRecModel``)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    negatives: int
    sampling: Literal["uniform", "popularity"]
    seed: int
    threads: int
    max_seconds: float | None


class _Block(nn.Module):
    """Pre-LayerNorm transformer block: causal multi-head attention, then a GELU MLP."""

    def __init__(self, dim: int, heads: int, dropout: float, ln_eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim, eps=ln_eps)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim, eps=ln_eps)
        self.ff1 = nn.Linear(dim, dim)
        self.ff2 = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Any, allowed: Any) -> Any:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)

        def split(t: Any) -> Any:
            return t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)

        o = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=allowed)
        x = x + self.drop(self.out(o.transpose(1, 2).reshape(b, n, d)))
        f = F.gelu(self.ff1(self.ln2(x)), approximate="tanh")
        return x + self.drop(self.ff2(f))


class SASRecNet(nn.Module):
    """Item and position embeddings, causal blocks, a final LayerNorm.

    Item row ``n_items`` is padding. Positions count from the end of the sequence, so the
    most recent item always has the last position embedding, however long the input.
    """

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.pad = spec.n_items
        self.item_emb = nn.Embedding(spec.n_items + 1, spec.dim, padding_idx=spec.n_items)
        self.pos_emb = nn.Parameter(torch.empty(spec.max_len, spec.dim))
        self.blocks = nn.ModuleList(
            [_Block(spec.dim, spec.heads, spec.dropout, spec.ln_eps) for _ in range(spec.blocks)]
        )
        self.ln_f = nn.LayerNorm(spec.dim, eps=spec.ln_eps)
        self.drop = nn.Dropout(spec.dropout)
        self.scale = math.sqrt(spec.dim)
        # Xavier-normal matrices, as in SASRec; inputs are scaled up by sqrt(dim) to match.
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)
        with torch.no_grad():
            self.item_emb.weight[self.pad].zero_()

    def forward(self, seqs: Any) -> Any:
        """``(B, L)`` item rows, left-padded, ``L <= max_len`` -> ``(B, L, dim)`` outputs.

        A real position attends to itself and the real positions before it; a padding
        position only to itself (its output is never used).
        """
        _, n = seqs.shape
        valid = seqs != self.pad
        x = self.item_emb(seqs) * self.scale + self.pos_emb[self.spec.max_len - n :]
        x = self.drop(x)
        idx = torch.arange(n)
        causal = idx[None, :] <= idx[:, None]
        allowed = causal[None] & (valid[:, None, :] | torch.eye(n, dtype=torch.bool)[None])
        allowed = allowed[:, None]  # one mask for every head
        for block in self.blocks:
            x = block(x, allowed)
        return self.ln_f(x)

    def item_matrix(self) -> Any:
        """The output embeddings of the real items (the input table, tied)."""
        return self.item_emb.weight[: self.spec.n_items]

    def export(self) -> dict[str, Float32Array]:
        """The weights under the names ``encode_sequence`` reads (matrices as ``x @ W``)."""
        with torch.no_grad():
            out: dict[str, Any] = {
                "item_emb": self.item_matrix(),
                "pos_emb": self.pos_emb,
                "lnf_w": self.ln_f.weight,
                "lnf_b": self.ln_f.bias,
            }
            for i, module in enumerate(self.blocks):
                blk = cast(_Block, module)
                p = f"b{i}."
                out |= {
                    p + "ln1_w": blk.ln1.weight,
                    p + "ln1_b": blk.ln1.bias,
                    p + "wqkv": blk.qkv.weight.T,
                    p + "bqkv": blk.qkv.bias,
                    p + "wo": blk.out.weight.T,
                    p + "bo": blk.out.bias,
                    p + "ln2_w": blk.ln2.weight,
                    p + "ln2_b": blk.ln2.bias,
                    p + "w1": blk.ff1.weight.T,
                    p + "b1": blk.ff1.bias,
                    p + "w2": blk.ff2.weight.T,
                    p + "b2": blk.ff2.bias,
                }
            return {
                name: np.ascontiguousarray(t.detach().numpy(), dtype=np.float32)
                for name, t in out.items()
            }


def train(
    net_spec: NetSpec,
    spec: TrainSpec,
    windows: list[IntArray],
    item_counts: FloatArray,
    on_epoch: Callable[[int, dict[str, Float32Array]], bool],
) -> dict[str, Float32Array]:
    """Train a fresh network on the windows (item rows, oldest first) and export it.

    ``on_epoch(epoch, weights)`` runs after each epoch; True stops training.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(spec.threads)
    try:
        return _train(net_spec, spec, windows, item_counts, on_epoch)
    finally:
        torch.set_num_threads(previous_threads)


def _batches(lengths: IntArray, batch_size: int, rng: np.random.Generator) -> list[IntArray]:
    """Window indices in batches of similar length, in random order."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * _CHUNK_BATCHES
    out: list[IntArray] = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        out += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


def _train(
    net_spec: NetSpec,
    spec: TrainSpec,
    windows: list[IntArray],
    item_counts: FloatArray,
    on_epoch: Callable[[int, dict[str, Float32Array]], bool],
) -> dict[str, Float32Array]:
    torch.manual_seed(spec.seed)
    rng = np.random.default_rng(spec.seed)
    net = SASRecNet(net_spec)
    n_items, pad = net_spec.n_items, net.pad
    lengths = np.array([len(w) for w in windows], dtype=np.int64)
    padded = np.full((len(windows), net_spec.max_len + 1), pad, dtype=np.int64)
    for row, w in enumerate(windows):
        padded[row, len(padded[row]) - len(w) :] = w

    # As many negatives as items cost more than the full softmax, which needs no sampling.
    full = spec.negatives == 0 or spec.negatives >= n_items
    cdf: FloatArray | None = None
    log_q: Any = None
    if not full and spec.sampling == "popularity":
        # Items never seen in training keep a count of 1, so they are still pushed down.
        q = np.maximum(item_counts, 1.0) ** _POPULARITY_POWER
        q /= q.sum()
        cdf = np.cumsum(q)
        log_q = torch.from_numpy(np.log(q).astype(np.float32))

    optimizer = torch.optim.AdamW(
        net.parameters(), lr=spec.lr, betas=(0.9, 0.98), weight_decay=spec.weight_decay
    )
    started = time.perf_counter()
    out_of_time = False
    weights = net.export()
    for epoch in range(1, spec.epochs + 1):
        net.train()
        for rows in _batches(lengths, spec.batch_size, rng):
            width = int(lengths[rows].max())
            block = torch.from_numpy(padded[rows, padded.shape[1] - width :])
            x, y = block[:, :-1], block[:, 1:]
            real = (x != pad) & (y != pad)
            h = net(x)[real]
            target = y[real]
            items = net.item_matrix()
            if full:
                loss: Any = F.cross_entropy(h @ items.T, target)
            else:
                if cdf is None:
                    neg_np = rng.integers(0, n_items, spec.negatives)
                else:
                    drawn = np.searchsorted(cdf, rng.random(spec.negatives))
                    neg_np = np.minimum(drawn, n_items - 1)
                neg = torch.from_numpy(neg_np.astype(np.int64))
                pos_logit = (h * items[target]).sum(dim=1, keepdim=True)
                neg_logit = h @ items[neg].T
                if log_q is not None:
                    # logQ: popular negatives are over-drawn; their logits are discounted
                    # by their draw probability, and so is the positive's.
                    pos_logit = pos_logit - log_q[target][:, None]
                    neg_logit = neg_logit - log_q[neg][None, :]
                neg_logit = neg_logit.masked_fill(neg[None, :] == target[:, None], -math.inf)
                logits = torch.cat([pos_logit, neg_logit], dim=1)
                loss = F.cross_entropy(logits, torch.zeros(len(target), dtype=torch.int64))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if spec.max_seconds is not None and time.perf_counter() - started > spec.max_seconds:
                out_of_time = True
                break
        net.eval()
        weights = net.export()
        if on_epoch(epoch, weights) or out_of_time:
            break
    return weights
