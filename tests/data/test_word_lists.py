import pytest

from bias_unlearn.config.errors import DataError
from bias_unlearn.data.word_lists import LIST_TYPES, Counterfactuals, load_word_list, map_offset


@pytest.mark.parametrize("bias_type", LIST_TYPES)
def test_shipped_lists_are_aligned_lower_case_rows(bias_type):
    wl = load_word_list(bias_type)
    assert len(wl.groups) >= 2 and len(wl.rows) >= 10
    assert all(len(row) == len(wl.groups) for row in wl.rows)


def test_swap_keeps_case_whole_words_and_records_spans():
    cf = Counterfactuals(("gender",))
    text, swaps = cf.swap("He told his Mother that the manager was kind.", 1)
    assert text == "She told her Father that the manager was kind."  # "manager" holds "man" but is not a word of it
    assert [(s.start, s.end, s.new_start, s.new_end) for s in swaps] == [(0, 2, 0, 3), (8, 11, 9, 12), (12, 18, 13, 19)]
    assert text[swaps[1].new_start : swaps[1].new_end] == "her"


def test_variants_cover_every_other_group_and_none_without_a_listed_word():
    cf = Counterfactuals(("religion",))
    variants = [t for t, _ in cf.variants("The Muslim went to the mosque.")]
    assert variants == [
        "The Jewish went to the synagogue.",
        "The Hindu went to the temple.",
        "The Christian went to the church.",
    ]
    assert cf.variants("The cat sat on the mat.") == []


def test_map_offset_moves_boundaries_past_swaps_and_refuses_inside_one():
    cf = Counterfactuals(("gender",))
    text, swaps = cf.swap("the boy and his dog", 1)  # -> "the girl and her dog"
    assert text == "the girl and her dog"
    assert map_offset(3, swaps) == 3  # before the swap
    assert map_offset(7, swaps) == 8  # the end of "boy" -> the end of "girl"
    assert map_offset(5, swaps) is None  # inside "boy"
    assert map_offset(len("the boy and his dog"), swaps) == len(text)


def test_a_malformed_list_names_the_file_and_line(tmp_path):
    (tmp_path / "gender.tsv").write_text("# c\nmale\tfemale\nhe\tshe\nHim\ther\n")
    load_word_list.cache_clear()
    with pytest.raises(DataError, match=r"gender\.tsv.*line 4"):
        load_word_list("gender", tmp_path)
    load_word_list.cache_clear()
