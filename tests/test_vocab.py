"""The shared vocabulary is defined once (vitcost/vocab.py) and every layer uses it as it is: the run
mode has one spelling (inference, with infer accepted), the conventions and optimizers one list."""

from __future__ import annotations

import pytest

from vitcost.analytic.cost import CONVENTIONS
from vitcost.analytic.train_memory import STATE_COPIES
from vitcost.cli.app import ConventionOpt
from vitcost.errors import VitcostError
from vitcost.measure.counting import MODES
from vitcost.vocab import Convention, Optimizer, RunMode, parse_optimizer, parse_run_mode


@pytest.mark.parametrize("text,mode", [("inference", RunMode.inference), ("infer", RunMode.inference),
                                       (" Train ", RunMode.train), (RunMode.train, RunMode.train)])
def test_run_mode_has_one_spelling(text, mode):
    assert parse_run_mode(text) is mode


def test_an_unknown_run_mode_lists_the_choices():
    with pytest.raises(VitcostError, match="unknown --mode .eval.; choose from inference, train"):
        parse_run_mode("eval")


def test_every_list_is_the_vocabulary():
    assert list(CONVENTIONS) == [c.value for c in Convention]
    assert ConventionOpt.__origin__ is Convention
    assert list(STATE_COPIES) == [o.value for o in Optimizer]
    assert MODES == ("inference", "train")
    assert parse_optimizer("AdamW") == "adamw"
    with pytest.raises(VitcostError, match="choose from none, sgd, adamw"):
        parse_optimizer("lion")
