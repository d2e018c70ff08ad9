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


def pack(
    batches: list[dict], pad_id: int, widths: tuple[int, ...] | None = None, max_width: int | None = None
) -> Packed:
    """Pack right-padded batches (``input_ids``, ``attention_mask``) into rows; of the candidate row ``widths``
    (default: every width from the longest sequence to 4 times it, in steps of 1/16 of it when that is long, and no
    wider than ``max_width`` unless the longest sequence is) the one that leaves the fewest padded cells, the
    narrowest of those (attention grows with the square of the width)."""
    sequences = [(b, i) for b, batch in enumerate(batches) for i in range(len(batch["input_ids"]))]
    lengths = [int(batches[b]["attention_mask"][i].sum()) for b, i in sequences]
    longest = max(lengths)
    step = max(1, longest // 16)  # at most ~48 candidates for long sequences: the search stays cheap
    widest = max(longest, min(4 * longest, max_width or 4 * longest))
    candidates = [w for w in (widths or range(longest, widest + 1, step)) if w >= longest] or [longest]
    layouts = {w: first_fit_decreasing(lengths, w) for w in candidates}
    width = min(candidates, key=lambda w: (len(layouts[w]) * w, w))
    rows = layouts[width]
    device = batches[0]["input_ids"].device
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    positions = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    segment = torch.full((len(rows), width), -1, dtype=torch.long, device=device)
    gather = [
        torch.full(batch["input_ids"].shape, len(rows) * width, dtype=torch.long, device=device) for batch in batches
    ]
    for r, members in enumerate(rows):
        offset = 0
        for k in members:
            (b, i), n = sequences[k], lengths[k]
            ids[r, offset : offset + n] = batches[b]["input_ids"][i, :n]
            positions[r, offset : offset + n] = torch.arange(n, device=device)
            segment[r, offset : offset + n] = k
            gather[b][i, :n] = r * width + offset + torch.arange(n, device=device)
            offset += n
    causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
    same = (segment[:, :, None] == segment[:, None, :]) & (segment[:, :, None] >= 0)
    mask = (same & causal) | torch.eye(width, dtype=torch.bool, device=device)  # padding attends to itself only
    return Packed(ids, positions, mask[:, None], gather)


def packed_loss_rows(hidden: torch.Tensor, packed: Packed, masks: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per batch, the hidden states (N, H) at its loss positions (``masks[b]``: (B, T-1), the frame of next-token
    predictions), row-major as ``lm_head.loss_rows`` gives them from a padded layout, read from the packed rows."""
    flat = hidden.reshape(-1, hidden.shape[-1])
    return [flat[index[:, :-1][mask.bool()]] for index, mask in zip(packed.gather, masks)]
