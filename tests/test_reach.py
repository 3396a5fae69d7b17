"""What a part's answer reaches in the cells a student wrote (hwkit.reach): the code a forbidden-shortcut scan
reads. A student hiding a forbidden call behind helpers and aliases is followed; a student's unrelated test code
is not read as their answer."""
from hwkit.reach import reached

ANSWER = "def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):\n    m = 2\n    return _step(x, (h, c), W_ih, W_hh, b_ih, b_hh)"


def test_helpers_and_aliases_are_followed_through_other_cells():
    others = ["import torch\nfrom torch import lstm_cell as _op",
              "def _step(*args):\n    return _impl(*args)",
              "_impl = lambda *a: _op(*a)"]
    kept = reached([ANSWER], others)
    assert any("lstm_cell as _op" in s for s in kept) and any("_op(*a)" in s for s in kept)


def test_an_answer_defined_again_in_a_later_cell_is_reached():
    kept = reached([ANSWER], ["def lstm_cell(*args):\n    return torch.lstm_cell(*args)"])
    assert kept == ["def lstm_cell(*args):\n    return torch.lstm_cell(*args)"]


def test_a_students_own_test_code_is_not_their_answer():
    others = ["m = nn.LSTM(3, 4)   # the function's local m is not this one",
              "ref = nn.LSTM(3, 4)\nassert torch.allclose(lstm_cell(*args)[0], ref(x)[0])",
              "def _step(*args):\n    return args[0]"]
    assert reached([ANSWER], others) == ["def _step(*args):\n    return args[0]"]


def test_magics_are_read_past_and_a_cell_that_does_not_parse_is_taken_whole():
    assert reached([ANSWER], ["%matplotlib inline\n_step = print"]) == ["_step = print"]
    broken = "def _step(:\n    return torch.lstm_cell"
    assert reached([ANSWER], [broken]) == [broken]
