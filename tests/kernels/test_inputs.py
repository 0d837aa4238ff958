"""kernels._inputs: both accepted `groups` forms reach the kernels as the same CSR parts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from kernels._inputs import as_offsets, as_text_shard, as_texts
from tests.kernels.conftest import arrow_form


def shard_texts(shard) -> list[bytes]:
    data = shard.data.tobytes()
    return [data[start:stop] for start, stop in zip(shard.text_offsets[:-1], shard.text_offsets[1:], strict=True)]


def test_list_and_arrow_forms_give_the_same_texts_and_groups():
    groups = [["a", "bé"], [], ["ccc"]]
    by_list = as_text_shard(groups)
    by_arrow = as_text_shard(arrow_form(groups))
    assert shard_texts(by_list) == shard_texts(by_arrow) == [b"a", "bé".encode(), b"ccc"]
    np.testing.assert_array_equal(by_list.group_offsets, [0, 2, 2, 3])
    np.testing.assert_array_equal(by_arrow.group_offsets, by_list.group_offsets)


def test_arrow_buffer_is_read_without_copying():
    texts = pa.array(["first", "second"])
    shard = as_text_shard((texts, np.array([0, 2])))
    assert shard.data.ctypes.data == texts.buffers()[2].address


def test_sliced_arrow_array_keeps_absolute_offsets():
    shard = as_text_shard((pa.array(["skip", "keep", "this"])[1:], np.array([0, 2])))
    assert shard_texts(shard) == [b"keep", b"this"]


def test_chunked_array_is_combined():
    chunked = pa.chunked_array([["a", "b"], ["c"]])
    assert shard_texts(as_text_shard((chunked, np.array([0, 3])))) == [b"a", b"b", b"c"]


def test_nulls_become_empty_strings():
    assert shard_texts(as_text_shard([["x", None]])) == [b"x", b""]
    assert shard_texts(as_text_shard((pa.array(["x", None]), np.array([0, 2])))) == [b"x", b""]


def test_empty_arrow_array():
    data, offsets = as_texts(pa.array([], type=pa.string()))
    assert data.size == 0
    np.testing.assert_array_equal(offsets, [0])


def test_a_bare_string_is_rejected():
    with pytest.raises(TypeError):
        as_text_shard("not a list of groups")


@pytest.mark.parametrize("groups", [["hello world", "hello world"], [["a"], "bc"], [b"ab"], [bytearray(b"ab")]],
                         ids=["flat", "mixed", "bytes", "bytearray"])
def test_a_group_that_is_a_string_is_rejected(groups):
    # A flat list of texts was read as groups of characters, each character a response.
    with pytest.raises(TypeError, match=r"groups\[\d\] is a"):
        as_text_shard(groups)


def test_non_string_arrow_array_is_rejected():
    with pytest.raises(TypeError, match="string"):
        as_text_shard((pa.array([1, 2]), np.array([0, 2])))


@pytest.mark.parametrize("offsets", [[1, 2], [0, 3], [0, 2, 1, 2], []], ids=["start", "end", "order", "empty"])
def test_bad_offsets_are_rejected(offsets):
    with pytest.raises(ValueError):
        as_offsets(np.array(offsets, dtype=np.int64), 2, "offsets")


def test_text_that_is_not_utf8_encodable_is_rejected():
    with pytest.raises(UnicodeEncodeError):
        as_text_shard([["lone surrogate \ud800"]])
