"""Sequence packing: the real tokens of several right-padded batches laid end to end in a few rows, so that no
matmul runs on padding. Each sequence keeps its own positions (restarting at 0) and attends only to itself (a
block-diagonal causal mask), so every hidden state equals the padded forward's up to float rounding."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Packed:
    input_ids: torch.Tensor  # (R, C)
    position_ids: torch.Tensor  # (R, C)
    attention_mask: torch.Tensor  # (R, 1, C, C) bool: True where a query may attend to a key
    gather: list[torch.Tensor]  # per batch, (B, T): flat index into the packed rows; R * C (a zero row) for padding


def first_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Sequence indices in rows of at most ``capacity`` tokens (longest first, into the first row with room)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: -lengths[j]):
        slot = next((r for r, free in enumerate(room) if free >= lengths[i]), None)
        if slot is None:
            rows.append([])
            room.append(capacity)
            slot = len(rows) - 1
        rows[slot].append(i)
        room[slot] -= lengths[i]
    return rows


def pack(batches: list[dict], pad_id: int, widths: tuple[int, ...] | None = None) -> Packed:
    """Pack right-padded batches (``input_ids``, ``attention_mask``) into rows; of the candidate row ``widths``
    (default: 1 to 4 times the longest sequence) the one that leaves the fewest padded cells."""
    sequences = [(b, i) for b, batch in enumerate(batches) for i in range(len(batch["input_ids"]))]
    lengths = [int(batches[b]["attention_mask"][i].sum()) for b, i in sequences]
    longest = max(lengths)
    candidates = [w for w in (widths or tuple(k * longest for k in (1, 2, 3, 4))) if w >= longest] or [longest]
    layouts = {w: first_fit_decreasing(lengths, w) for w in candidates}
    width = min(candidates, key=lambda w: (len(layouts[w]) * w, w))
    rows = layouts[width]
    device = batches[0]["input_ids"].device
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    positions = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    segment = torch.full((len(rows), width), -1, dtype=torch.long, device=device)
    gather = [torch.full(batch["input_ids"].shape, len(rows) * width, dtype=torch.long, device=device)
              for batch in batches]
    for r, members in enumerate(rows):
        offset = 0
        for k in members:
            (b, i), n = sequences[k], lengths[k]
            ids[r, offset: offset + n] = batches[b]["input_ids"][i, :n]
            positions[r, offset: offset + n] = torch.arange(n, device=device)
            segment[r, offset: offset + n] = k
            gather[b][i, :n] = r * width + offset + torch.arange(n, device=device)
            offset += n
    causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
    same = (segment[:, :, None] == segment[:, None, :]) & (segment[:, :, None] >= 0)
    mask = (same & causal) | torch.eye(width, dtype=torch.bool, device=device)  # padding attends to itself only
    return Packed(ids, positions, mask[:, None], gather)


def unpack(hidden: torch.Tensor, packed: Packed) -> list[torch.Tensor]:
    """Per batch, the hidden states in its padded (B, T, H) layout (zeros at padding)."""
    flat = torch.cat([hidden.reshape(-1, hidden.shape[-1]), hidden.new_zeros(1, hidden.shape[-1])])
    return [flat[index] for index in packed.gather]
