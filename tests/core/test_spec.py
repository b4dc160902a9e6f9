"""The spec's trigger knowledge: identifiers and templates are untrusted input to `str.format`, so they are bounded
and may only name the two fields the core fills in."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from persguard_core.spec import UNIVERSAL_IDENTIFIERS, UNIVERSAL_TEMPLATES, Knowledge


def test_the_default_and_gray_box_knowledge_are_valid_and_build_their_prompts() -> None:
    assert Knowledge().trigger_prompts("dog") == ["a photo of sks dog"]
    gray = Knowledge.gray_box()
    assert len(gray.trigger_prompts("dog")) == len(UNIVERSAL_IDENTIFIERS) * len(UNIVERSAL_TEMPLATES)
    escaped = Knowledge(templates=["{{literal}} {identifier} {class_noun}"])
    assert escaped.trigger_prompts("dog") == ["{literal} sks dog"]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("a {identifier:>2000000000} {class_noun}", "format spec"),
        ("a {identifier} {class_noun:>9}", "format spec"),
        ("a {identifier!r} {class_noun}", "conversion"),
        ("a {identifier} {class_noun} {0}", "field '0'"),
        ("a {identifier} {class_noun} {}", "positional field"),
        ("a {identifier} {class_noun} {prompt}", "field 'prompt'"),
        ("a {identifier.__class__} {class_noun}", "field 'identifier.__class__'"),
        ("a {identifier[0]} {class_noun}", "field 'identifier[0]'"),
        ("a {identifier} {class_noun} {", "not a valid template"),
        ("a {identifier} {class_noun} }", "not a valid template"),
        ("a photo of {class_noun}", "must contain {identifier} and {class_noun}"),
    ],
)
def test_templates_may_name_only_identifier_and_class_noun_plainly(template: str, message: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ValidationError, match=message.replace("{", r"\{").replace("[", r"\[")) as refused:
        Knowledge(templates=[template])
    assert time.perf_counter() - start < 1.0, "refused at validation time, without formatting anything"
    assert refused.value.errors()[0]["loc"] == ("templates",)


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"identifiers": [f"id{i}" for i in range(17)]}, ("identifiers",)),
        ({"templates": [f"{i} {{identifier}} {{class_noun}}" for i in range(17)]}, ("templates",)),
        ({"identifiers": ["x" * 33]}, ("identifiers", 0)),
        ({"templates": ["{identifier} {class_noun} " + "x" * 200]}, ("templates", 0)),
        ({"identifiers": []}, ("identifiers",)),
        ({"identifiers": [""]}, ("identifiers", 0)),
        ({"identifiers": ["a b"]}, ("identifiers",)),
        ({"identifiers": ["a\tb"]}, ("identifiers",)),
        ({"identifiers": ["{class_noun}"]}, ("identifiers",)),
        ({"identifiers": ["sks}"]}, ("identifiers",)),
    ],
)
def test_identifiers_and_templates_are_bounded_and_identifiers_are_plain_words(fields: dict, where: tuple) -> None:
    with pytest.raises(ValidationError) as refused:
        Knowledge(**fields)
    assert refused.value.errors()[0]["loc"] == where


def test_the_largest_allowed_knowledge_is_accepted() -> None:
    knowledge = Knowledge(
        identifiers=["x" * 32] * 16,
        templates=[("{identifier} {class_noun} " + "y" * 200)[:200]] * 16,
    )
    assert len(knowledge.trigger_prompts("dog")) == 256
