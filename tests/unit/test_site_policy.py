"""A site's policy (domain/site_policy.py): which jobs an agent runs; a table of cases."""

from __future__ import annotations

import pytest

from florist_grpc.domain.site_policy import MODEL_NOT_ALLOWED, PROJECT_NOT_ALLOWED, SitePolicy, policy_refusal

CASES = [
    # (what, policy, project, model, builtin, expected reason or None)
    ("no policy: every project, built-in models", SitePolicy(), "any", "MLP", True, None),
    ("no --allow-model: a plugin's model is refused", SitePolicy(), "any", "MyNet", False, MODEL_NOT_ALLOWED),
    ("a plugin's model runs when named", SitePolicy(models=("MyNet",)), "any", "MyNet", False, None),
    (
        "named models only: a built-in one not named is refused",
        SitePolicy(models=("MyNet",)),
        "p",
        "MLP",
        True,
        MODEL_NOT_ALLOWED,
    ),
    ("an allowed project", SitePolicy(projects=("a", "b")), "b", "MLP", True, None),
    ("another project", SitePolicy(projects=("a", "b")), "c", "MLP", True, PROJECT_NOT_ALLOWED),
    ("the project is checked first", SitePolicy(projects=("a",), models=("X",)), "c", "MLP", True, PROJECT_NOT_ALLOWED),
]


@pytest.mark.parametrize(
    ("what", "policy", "project", "model", "builtin", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_site_policy(
    what: str, policy: SitePolicy, project: str, model: str, builtin: bool, expected: str | None
) -> None:
    refusal = policy_refusal("site-a", policy, project, model, builtin)
    assert (refusal.reason if refusal else None) == expected
    if refusal is not None:
        assert refusal.message.startswith("agent site-a does not run ")


def test_the_refusal_names_the_rule() -> None:
    refusal = policy_refusal("site-a", SitePolicy(), "p", "MyNet", False)
    assert refusal is not None and "without --allow-model it runs the built-in models only" in refusal.message
    assert SitePolicy(("a", "b"), ()).describe() == "projects a,b; models built-in"
