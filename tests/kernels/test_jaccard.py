"""kernels.jaccard against plain-Python sets, and its documented edge cases."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from kernels.jaccard import jaccard_matrices, jaccard_matrices_reference, vocab_diversity, vocab_diversity_reference
from tests.kernels.conftest import random_groups, random_text


@pytest.mark.parametrize("seed", range(3))
def test_matrices_agree_with_reference(seed, as_input):
    groups = random_groups(seed)
    matrices = jaccard_matrices(as_input(groups))
    expected = jaccard_matrices_reference(groups)
    assert len(matrices) == len(expected)
    for group, (matrix, reference) in enumerate(zip(matrices, expected, strict=True)):
        np.testing.assert_allclose(matrix, reference, rtol=0, atol=1e-15, err_msg=f"jaccard, group {group}")


@pytest.mark.parametrize("seed", range(3))
def test_vocab_diversity_agrees_with_reference(seed, as_input):
    groups = random_groups(seed)
    np.testing.assert_allclose(
        vocab_diversity(as_input(groups)), vocab_diversity_reference(groups), rtol=1e-12, err_msg="vocab_diversity"
    )


@pytest.mark.parametrize("seed", range(2))
def test_matrices_agree_with_reference_in_every_script(seed, as_input):
    # Thai, Khmer, Myanmar graphemes and other scripts' punctuation through the Jaccard kernel's own tokenizer call.
    groups = random_groups(seed, scripts=True)
    for group, (matrix, reference) in enumerate(
        zip(jaccard_matrices(as_input(groups)), jaccard_matrices_reference(groups), strict=True)
    ):
        np.testing.assert_allclose(matrix, reference, rtol=0, atol=1e-15, err_msg=f"jaccard, group {group}")


def test_groups_wider_than_one_bitmask_word_agree():
    """Over 64 responses the per-token response sets span several 64-bit words."""
    rng = random.Random(1)
    groups = [[random_text(rng, max_words=15) for _ in range(150)], [random_text(rng) for _ in range(3)]]
    for matrix, reference in zip(jaccard_matrices(groups), jaccard_matrices_reference(groups), strict=True):
        np.testing.assert_allclose(matrix, reference, rtol=0, atol=1e-15)


def test_empty_group_gives_empty_matrix_and_nan_diversity():
    assert jaccard_matrices([[]])[0].shape == (0, 0)
    assert math.isnan(vocab_diversity([[]])[0])


def test_single_response_gives_unit_matrix_and_nan_diversity():
    np.testing.assert_array_equal(jaccard_matrices([["only one"]])[0], [[1.0]])
    assert math.isnan(vocab_diversity([["only one"]])[0])


def test_two_empty_responses_are_identical():
    np.testing.assert_array_equal(jaccard_matrices([["", "?!"]])[0], [[1.0, 1.0], [1.0, 1.0]])


def test_empty_and_non_empty_responses_share_nothing():
    assert jaccard_matrices([["", "words here"]])[0][0, 1] == 0.0


def test_duplicates_have_similarity_one_and_zero_diversity():
    assert vocab_diversity([["The same words.", "the SAME words"]])[0] == 0.0


def test_similarity_counts_word_sets_not_occurrences():
    """{a, b} vs {a, c}: one shared word of three, however often each repeats."""
    assert jaccard_matrices([["a a a b", "a c c"]])[0][0, 1] == pytest.approx(1 / 3)


def test_no_groups_give_empty_results():
    assert len(jaccard_matrices([])) == 0
    assert vocab_diversity([]).shape == (0,)


def test_group_offsets_must_cover_the_texts():
    import pyarrow as pa

    with pytest.raises(ValueError, match="group_offsets"):
        jaccard_matrices((pa.array(["a", "b"]), np.array([0, 1], dtype=np.int64)))


def test_thai_clauses_differing_by_a_word_share_their_other_characters():
    # Thai writes no spaces between words: each clause was one token, and "I like to eat rice" against "I like to
    # eat fruit" gave Jaccard 0. A token per character (with its marks) shares the rest.
    groups = [["ฉันชอบกินข้าวมาก", "ฉันชอบกินผลไม้มาก"]]
    (matrix,) = jaccard_matrices(groups)
    (reference,) = jaccard_matrices_reference(groups)
    assert matrix[0, 1] == reference[0, 1] > 0.5


def test_a_flat_list_of_texts_is_refused_not_read_as_groups_of_characters():
    # ["hello world", "hello world"] was two groups of characters: diversity 0.927 each, where one group of two
    # equal texts has 0.
    with pytest.raises(TypeError, match="groups"):
        vocab_diversity(["hello world", "hello world"])
    with pytest.raises(TypeError, match="groups"):
        jaccard_matrices([["a b"], "a b"])
    assert vocab_diversity([["hello world", "hello world"]])[0] == 0.0
