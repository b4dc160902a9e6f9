"""When a verification passes: the protective success rate reaches its bound and the utility drop stays under its."""

from __future__ import annotations

import math

from common.jobs.verification import failed_checks


def test_a_protection_that_works_without_costing_prompt_following_passes() -> None:
    assert failed_checks({"psr": 0.9, "utility_drop": 0.01}, min_psr=0.5, max_utility_drop=0.02) == []


def test_a_protection_that_costs_prompt_following_fails_naming_the_setting() -> None:
    failed = failed_checks({"psr": 0.9, "utility_drop": 0.05}, min_psr=0.5, max_utility_drop=0.02)
    assert len(failed) == 1 and "utility drop 0.050" in failed[0] and "VERIFY_MAX_UTILITY_DROP" in failed[0]


def test_a_low_or_unmeasured_protection_rate_fails_and_each_reason_is_listed() -> None:
    failed = failed_checks({"psr": 0.2, "utility_drop": 0.3}, min_psr=0.5, max_utility_drop=0.02)
    assert len(failed) == 2 and "0.200" in failed[0] and "VERIFY_PASS_PSR" in failed[0]
    assert "not measured" in failed_checks({"psr": math.nan}, min_psr=0.5, max_utility_drop=0.02)[0]


def test_an_unmeasured_utility_drop_is_no_reason_to_fail() -> None:
    for summary in ({"psr": 0.9}, {"psr": 0.9, "utility_drop": math.nan}, {"psr": 0.9, "utility_drop": None}):
        assert failed_checks(summary, min_psr=0.5, max_utility_drop=0.02) == []
