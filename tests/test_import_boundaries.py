"""The direction of imports (README, Architecture): the core imports none of the service or the research harness,
the service imports nothing of the research harness, and the client speaks HTTP only (no service or core code)."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _imported_packages(package: str) -> dict[str, set[str]]:
    """Top-level package of every import in `package`'s modules, by module path."""
    found: dict[str, set[str]] = {}
    for path in (REPO / package).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("persguard_core", {"research", "api", "common", "worker", "persguard_cli", "fastapi", "sqlalchemy", "celery"}),
        ("common", {"research", "api", "worker", "persguard_cli"}),
        ("api", {"research", "worker", "persguard_cli"}),
        ("worker", {"research", "api", "persguard_cli"}),
        ("persguard_client", {"research", "api", "common", "worker", "persguard_cli", "persguard_core", "torch"}),
    ],
)
def test_a_package_imports_nothing_it_must_not_depend_on(package: str, forbidden: set[str]) -> None:
    imports = _imported_packages(package)
    assert imports, f"no modules found under {package}/"
    offending = {module: sorted(names & forbidden) for module, names in imports.items() if names & forbidden}
    assert not offending, offending
