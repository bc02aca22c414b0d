"""Reading measured steps: step logs, operator CSVs, and the representative batch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.calibrate import read_measurements, read_op_csv, read_step_log, representative_rows
from servesim.calibrate.batches import batch_of, op_masks, regimes
from servesim.cost import CostParams, build_step_cost
from servesim.errors import ServesimError
from servesim.hardware import load_hardware
from servesim.model import load_model

EXAMPLES = Path(__file__).parent.parent / "examples" / "measured"


def step(**kw) -> dict:
    rec = {
        "type": "step",
        "step": 0,
        "start_s": 1.0,
        "duration_s": 0.005,
        "batch_size": 3,
        "prefill_tokens": 0,
        "decode_tokens": 3,
        "context_tokens": 1500,
    }
    rec.update(kw)
    return rec


def write(path: Path, lines: list) -> Path:
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines))
    return path


def test_step_log_columns_and_ignored_lines(tmp_path):
    path = write(
        tmp_path / "s.jsonl",
        [
            {"type": "meta", "gpu": "H100"},
            step(phases={"forward": 0.004}),
            {"ph": "X", "name": "span"},
            step(
                step=1,
                duration_s=0.02,
                batch_size=2,
                prefill_tokens=300,
                decode_tokens=1,
                context_tokens=700,
            ),
            '{"type": "step", "step": 2, "dur',  # a killed writer's truncated last line
        ],
    )
    m = read_step_log(path)
    assert len(m) == 2
    assert m.seconds.tolist() == [0.005, 0.02]
    assert m.tokens.tolist() == [3, 301]
    assert m.where == ("s.jsonl line 2", "s.jsonl line 4")
    assert m.op == ("step", "step")
    assert m.phases["forward"][0] == 0.004 and np.isnan(m.phases["forward"][1])
    assert m.rows == (None, None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"duration_s": 0}, "line 1: duration_s is 0"),
        ({"duration_s": -0.1}, "line 1: duration_s is -0.1"),
        ({"duration_s": "fast"}, "duration_s must be a number"),
        ({"batch_size": 2.5}, "batch_size must be a whole number"),
        ({"decode_tokens": 4}, "decode_tokens (4) exceeds batch_size (3)"),
        ({"batch_size": 5}, "2 sequences are not decoding but prefill_tokens is 0"),
        ({"prefill_tokens": 9}, "every one of the 3 sequences is decoding"),
        ({"batch_size": 0, "decode_tokens": 0}, "batch_size is 0"),
        ({"phases": {"forward": -1}}, "phase 'forward' is -1"),
        ({"new_tokens": [1, 1]}, "new_tokens and context_lens go together"),
        ({"new_tokens": [1, 1], "context_lens": [1, 2]}, "must be a list of 3 counts"),
        ({"new_tokens": [1, 1, 1], "context_lens": [1, 2, 3]}, "context_lens to 6"),
    ],
)
def test_bad_step_records_name_the_line(tmp_path, change, message):
    path = write(tmp_path / "bad.jsonl", [step(**change)])
    with pytest.raises(ServesimError) as err:
        read_step_log(path)
    assert message in str(err.value)
    assert "bad.jsonl line 1" in str(err.value)


def test_missing_fields_and_bad_json(tmp_path):
    rec = step()
    del rec["context_tokens"], rec["duration_s"]
    with pytest.raises(ServesimError, match="line 1: missing duration_s, context_tokens"):
        read_step_log(write(tmp_path / "a.jsonl", [rec]))
    with pytest.raises(ServesimError, match="line 1: not valid JSON"):
        read_step_log(write(tmp_path / "b.jsonl", ["{oops", step()]))
    with pytest.raises(ServesimError, match="no step records"):
        read_step_log(write(tmp_path / "c.jsonl", [{"type": "meta"}]))
    with pytest.raises(ServesimError, match="does not exist"):
        read_step_log(tmp_path / "missing.jsonl")


def test_logged_rows_are_kept_exactly(tmp_path):
    rec = step(new_tokens=[1, 1, 1], context_lens=[100, 400, 1000])
    m = read_step_log(write(tmp_path / "r.jsonl", [rec]))
    new, ctx = batch_of(m, 0)
    assert new.tolist() == [1, 1, 1] and ctx.tolist() == [100, 400, 1000]


def test_op_csv(tmp_path):
    path = tmp_path / "ops.csv"
    path.write_text(
        "seconds,op,tokens,context,batch,note\n"
        "0.01,step,64,1024,64,decode\n"
        "0.03,attention,1000,0,3,prefill of three\n"
    )
    m = read_op_csv(path)
    assert m.op == ("step", "attention")
    assert m.decode_tokens.tolist() == [64, 0]
    assert m.prefill_tokens.tolist() == [0, 1000]
    assert m.context_tokens.tolist() == [64 * 1024, 0]
    new, ctx = m.rows[1]
    assert new.tolist() == [334, 333, 333] and ctx.tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("op,tokens,context,batch\nstep,1,1,1\n", "missing column(s) seconds"),
        ("op,tokens,context,batch,seconds\nstep,1,1,1,0\n", "ops.csv row 2: seconds is 0"),
        ("op,tokens,context,batch,seconds\nstep,2,1,4,0.1\n", "row 2: tokens (2) must be"),
        ("op,tokens,context,batch,seconds\nstep,x,1,1,0.1\n", "row 2: tokens is 'x'"),
        ("op,tokens,context,batch,seconds\n,1,1,1,0.1\n", "row 2: op is empty"),
        ("op,tokens,context,batch,seconds\n", "no data rows"),
    ],
)
def test_bad_op_csv(tmp_path, body, message):
    path = tmp_path / "ops.csv"
    path.write_text(body)
    with pytest.raises(ServesimError) as err:
        read_op_csv(path)
    assert message in str(err.value)


def test_unknown_op_lists_the_names(tmp_path):
    path = tmp_path / "ops.csv"
    path.write_text("op,tokens,context,batch,seconds\nflash_attn,1,1,1,0.1\n")
    cost = build_step_cost(load_model("llama-3.1-8b"), load_hardware("h100"))
    with pytest.raises(ServesimError, match="'flash_attn' is not an operator.*attention"):
        op_masks(cost, read_op_csv(path))


def test_example_files_parse():
    m = read_measurements(
        [EXAMPLES / "steps.jsonl", EXAMPLES / "steps_rows.jsonl", EXAMPLES / "ops.csv"]
    )
    assert len(m) == 128 + 12 + 12
    assert set(m.source) == {"steps.jsonl", "steps_rows.jsonl", "ops.csv"}
    assert sorted(m.phases) == ["forward", "sample", "schedule"]
    assert sum(r is not None for r in m.rows) == 24  # steps_rows.jsonl and ops.csv


# --------------------------------------------------------------------------- batches


@given(
    decode=st.integers(0, 64),
    prefill_rows=st.integers(0, 4),
    extra=st.integers(0, 5000),
    context=st.integers(0, 200_000),
)
@settings(max_examples=200, deadline=None)
def test_representative_rows_keep_the_aggregates(decode, prefill_rows, extra, context):
    batch = decode + prefill_rows
    if batch == 0:
        return
    prefill = prefill_rows + extra if prefill_rows else 0
    new, ctx = representative_rows(batch, prefill, decode, context)
    assert len(new) == len(ctx) == batch
    assert int(new.sum()) == prefill + decode and int(ctx.sum()) == context
    assert (new >= 1).all() and (ctx >= 0).all()
    assert new.max() - new[decode:].min(initial=new.max()) <= 1 or decode == 0


@given(
    contexts=st.lists(st.integers(0, 30_000), min_size=1, max_size=40),
    prompt=st.integers(2, 3000),
    num_prompts=st.integers(0, 3),
)
@settings(max_examples=100, deadline=None)
def test_features_are_exact_for_decode_and_fresh_prefill(contexts, prompt, num_prompts):
    """Decodes (any contexts) plus equal fresh prompts (no context): aggregates lose nothing.

    (Prompts of different lengths differ in Σ n², the causal pairs inside each chunk.)"""
    cost = _cost()
    prompts = [prompt] * num_prompts
    new = np.array([1] * len(contexts) + prompts)
    ctx = np.array(contexts + [0] * len(prompts))
    rep = representative_rows(len(new), sum(prompts), len(contexts), sum(contexts))
    assert np.allclose(cost.features(*rep), cost.features(new, ctx), rtol=1e-12)


def _cost():
    return build_step_cost(load_model("llama-3.1-8b"), load_hardware("h100"), params=CostParams())


def test_regimes(tmp_path):
    recs = [
        step(batch_size=1, prefill_tokens=1000, decode_tokens=0, context_tokens=0),
        step(batch_size=101, prefill_tokens=100, decode_tokens=100, context_tokens=10),
        step(batch_size=11, prefill_tokens=1, decode_tokens=10, context_tokens=10),
    ]
    m = read_step_log(write(tmp_path / "r.jsonl", recs))
    assert regimes(m).tolist() == ["prefill-heavy", "mixed", "decode-heavy"]
