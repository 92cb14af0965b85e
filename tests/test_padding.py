"""course_lib.padding: right-padding one sequence; filling a list up to a batch size."""
import pytest
import torch

from course_instructor.reference import pad_to_length
from course_lib.padding import pad_to_batch_size

EOS = 50256


def test_pad_tensor_to_length():
    seq = torch.tensor([464, 3807, 373], dtype=torch.long)
    out = pad_to_length(seq, 6, EOS)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (6,) and out.dtype == torch.long
    assert out.tolist() == [464, 3807, 373, EOS, EOS, EOS]
    assert seq.tolist() == [464, 3807, 373]  # input untouched


def test_pad_keeps_dtype_of_the_tensor():
    out = pad_to_length(torch.tensor([1, 2], dtype=torch.int32), 3, 0)
    assert out.dtype == torch.int32 and out.tolist() == [1, 2, 0]


def test_pad_list_to_length():
    seq = [464, 3807]
    out = pad_to_length(seq, 5, 0)
    assert out == [464, 3807, 0, 0, 0]
    assert isinstance(out, list)
    assert seq == [464, 3807]


def test_already_long_enough_is_unchanged():
    assert pad_to_length([1, 2, 3], 3, 0) == [1, 2, 3]
    assert pad_to_length(torch.tensor([1, 2, 3]), 3, 0).tolist() == [1, 2, 3]
    assert pad_to_length([], 2, 9) == [9, 9]


@pytest.mark.parametrize("seq", [[1, 2, 3, 4], torch.tensor([1, 2, 3, 4])])
def test_too_long_is_a_value_error(seq):
    with pytest.raises(ValueError, match="4 tokens is longer than the target length 3"):
        pad_to_length(seq, 3, 0)


def test_negative_length_is_a_value_error():
    with pytest.raises(ValueError, match="length must be >= 0"):
        pad_to_length([1], -1, 0)


@pytest.mark.parametrize("seq", [(1, 2), torch.zeros((2, 2), dtype=torch.long)])
def test_other_types_are_a_type_error(seq):
    with pytest.raises(TypeError, match="list of ints or a 1-D torch tensor"):
        pad_to_length(seq, 5, 0)


def test_pad_to_batch_size_tensors():
    seqs = [torch.tensor([5, 6, 7]), torch.tensor([1, 2, 3, 4, 5])]
    out = pad_to_batch_size(seqs, 4, EOS)
    assert len(out) == 4
    assert out[0] is seqs[0] and out[1] is seqs[1]  # the real sequences are kept as they are
    for extra in out[2:]:
        assert extra.shape == (5,) and extra.dtype == seqs[0].dtype
        assert extra.tolist() == [EOS] * 5
    assert len(seqs) == 2  # input list not modified


def test_pad_to_batch_size_lists():
    seqs = [[1, 2], [3, 4, 5, 6]]
    out = pad_to_batch_size(seqs, 4, 0)
    assert out == [[1, 2], [3, 4, 5, 6], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert seqs == [[1, 2], [3, 4, 5, 6]]


def test_full_batch_is_a_new_equal_list():
    seqs = [[1], [2]]
    out = pad_to_batch_size(seqs, 2, 0)
    assert out == seqs and out is not seqs


def test_pad_to_batch_size_accepts_a_tuple():
    assert pad_to_batch_size(([1, 2],), 2, 0) == [[1, 2], [0, 0]]


def test_pad_empty_batch_is_a_value_error():
    with pytest.raises(ValueError, match="empty list"):
        pad_to_batch_size([], 4, 0)


def test_too_many_sequences_is_a_value_error():
    seqs = [[1], [2], [3]]
    with pytest.raises(ValueError, match="3 sequences exceed the batch size 2"):
        pad_to_batch_size(seqs, 2, 0)
    assert seqs == [[1], [2], [3]]


def test_left_pad_ends_every_row_at_the_last_column():
    import torch

    from course_lib.padding import left_pad, position_ids

    ids, mask = left_pad([torch.tensor([5, 6, 7]), torch.tensor([8])], pad_token_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert position_ids(mask).tolist() == [[0, 1, 2], [0, 0, 0]]
