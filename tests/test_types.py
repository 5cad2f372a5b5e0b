"""The boundary records' own rules."""

from __future__ import annotations

import pytest

from treemem.types import ConfigError, ProposalOptions


def test_proposal_options_report_only_what_is_asked_for() -> None:
    assert ProposalOptions().requested() == ()
    assert ProposalOptions(presence_threshold=-1.0).requested() == ("presence_threshold",)
    assert ProposalOptions(boxes=True, presence_threshold=-1.0).requested() == (
        "boxes",
        "presence_threshold",
    )


def test_an_unsupported_option_is_refused_by_name_and_defaults_always_pass() -> None:
    ProposalOptions().check("old", supported=())
    ProposalOptions(boxes=True).check("boxy", supported={"boxes"})
    with pytest.raises(ConfigError, match=r"backend old does not support .*boxes=True"):
        ProposalOptions(boxes=True).check("old", supported={"presence_threshold"})
