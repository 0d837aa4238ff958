"""The stage contract, tested once on toy stages (ray's test_stage_base.py does the same)."""

import pyarrow as pa
import pytest

from engine.stages.base import ERROR, IDX, ROW, SHARD, Stage, StageContractError


class Reverse(Stage):
    """Answers out of order: last row first."""

    name = "reverse"
    required_inputs = {"x": "an integer"}
    output_schema = pa.schema([("y", pa.int64())])

    def process(self, rows):
        for k in reversed(range(len(rows))):
            yield {IDX: k, "y": rows[k]["x"] * 10}


def test_outputs_come_back_in_input_order():
    out = Reverse()(pa.table({"x": [1, 2, 3]}))
    assert out.column("y").to_pylist() == [10, 20, 30]


def test_shard_and_row_columns_pass_through():
    out = Reverse()(pa.table({"x": [1, 2], SHARD: ["a", "b"], ROW: [0, 1]}))
    assert out.column(SHARD).to_pylist() == ["a", "b"] and out.column(ROW).to_pylist() == [0, 1]


def test_missing_input_column_names_stage_and_columns():
    with pytest.raises(ValueError, match=r"stage 'reverse' is missing input columns \['x'\].*x \(an integer\)"):
        Reverse()(pa.table({"z": [1]}))


class Broken(Stage):
    name = "broken"
    output_schema = pa.schema([("y", pa.int64())])

    def __init__(self, mode):
        self.mode = mode

    def process(self, rows):
        if self.mode == "untagged":
            yield {"y": 1}
        elif self.mode == "duplicate":
            yield {IDX: 0, "y": 1}
            yield {IDX: 0, "y": 1}
        elif self.mode == "missing":
            yield {IDX: 0, "y": 1}
        elif self.mode == "outside":
            yield {IDX: 5, "y": 1}


def test_an_error_of_a_backends_own_fails_the_batch_not_the_run():
    # A tokenizer's ValueError or CUDA's out-of-memory RuntimeError is no BackendError: it raised out of the run.
    class Raising(Broken):
        def process(self, rows):
            raise ValueError("the chat template needs alternating roles")
            yield  # a generator, as stages are

    out = Raising("any")(pa.table({"x": [1, 2]}))
    assert out.column(ERROR).to_pylist() == ["ValueError: the chat template needs alternating roles"] * 2


@pytest.mark.parametrize("mode,message", [("untagged", "without its"), ("duplicate", "twice"),
                                          ("missing", "no output for rows"), ("outside", "outside the batch")])
def test_contract_violations_are_rejected(mode, message):
    with pytest.raises(StageContractError, match=message):
        Broken(mode)(pa.table({"x": [1, 2]}))
