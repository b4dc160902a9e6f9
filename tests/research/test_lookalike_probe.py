from dataclasses import fields

from persguard_core.toyworld.subjects import split
from research.probes.lookalike_probe import _changed, lookalikes


def test_each_lookalike_differs_in_exactly_its_attribute():
    for subject in split("tuning")[:20]:
        app = subject.appearance
        groups = lookalikes(app)
        assert set(groups) == {"colour", "secondary", "texture", "shape", "marking"}
        for attribute, apps in groups.items():
            assert apps, attribute
            for other in apps:
                differing = [f.name for f in fields(app) if getattr(app, f.name) != getattr(other, f.name)]
                assert differing == [attribute]
                assert _changed(app, other).startswith(f"{attribute}=")
                colours = [other.colour, other.secondary, other.marking[0] if other.marking else None]
                assert len({c for c in colours if c}) == len([c for c in colours if c])  # no colour used twice
