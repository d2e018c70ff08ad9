"""models/packing.py: sequences packed end to end, each apart, in the width that pads least."""

import torch


def test_packing_fills_rows_and_keeps_each_sequence_apart():
    from bias_unlearn.models.packing import first_fit_decreasing, pack

    assert first_fit_decreasing([5, 3, 4, 2], 7) == [[0, 3], [2, 1]]
    a = {
        "input_ids": torch.tensor([[7, 8, 9, 0], [5, 6, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]),
    }
    b = {"input_ids": torch.tensor([[4, 3, 2, 1]]), "attention_mask": torch.tensor([[1, 1, 1, 1]])}
    packed = pack([a, b], pad_id=0, widths=(6,))
    assert packed.input_ids.tolist() == [[4, 3, 2, 1, 5, 6], [7, 8, 9, 0, 0, 0]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 0, 1], [0, 1, 2, 0, 0, 0]]
    mask = packed.attention_mask[0, 0]
    assert mask[5].tolist() == [False, False, False, False, True, True]  # 6 sees 5 and itself, not the other row
    assert mask[3].tolist() == [True, True, True, True, False, False]
    assert packed.gather[0].tolist() == [[6, 7, 8, 12], [4, 5, 12, 12]] and packed.gather[1].tolist() == [[0, 1, 2, 3]]


def test_packing_chooses_the_width_with_the_least_padding():
    from bias_unlearn.models.packing import pack

    lengths = [10, 10, 10, 5, 5, 5, 5]  # width 10: 5 rows (50 cells); width 20: 3 rows (60); width 30: 2 rows (60)
    batch = {
        "input_ids": torch.ones(len(lengths), 10, dtype=torch.long),
        "attention_mask": torch.tensor([[1] * n + [0] * (10 - n) for n in lengths]),
    }
    packed = pack([batch], pad_id=0)
    assert packed.input_ids.shape == (5, 10)
    lengths = [8, 8, 2]  # no multiple of 8 fits them without padding; width 18 holds all three in one row
    batch = {
        "input_ids": torch.ones(3, 8, dtype=torch.long),
        "attention_mask": torch.tensor([[1] * n + [0] * (8 - n) for n in lengths]),
    }
    assert pack([batch], pad_id=0).input_ids.shape == (1, 18)
    assert pack([batch], pad_id=0, max_width=12).input_ids.shape == (2, 10)  # 8 + 2 | 8: rows capped at 12
    assert pack([batch], pad_id=0, max_width=4).input_ids.shape == (3, 8)  # never narrower than the longest
