"""A site's policy: which jobs an agent runs on its data (`agent --allow-project`, `--allow-model`). Pure rules,
applied on both ends: the control plane refuses a job a site's policy excludes before anything launches (the
policy comes in the agent's hello), and the agent refuses it anyway if asked (defence in depth).

No `--allow-project`: every project (the agent token's PROJECTS still bound it). No `--allow-model`: the built-in
models only, so a plugin installed on the site for one job does not silently run for every job; a plugin's model
runs only when named. With `--allow-model`, exactly the models named (built-in ones included only when named).
"""

from __future__ import annotations

from dataclasses import dataclass

from florist_grpc.domain.errors import quote

# google.rpc.ErrorInfo reasons of a refusal, one per rule.
PROJECT_NOT_ALLOWED = "SITE_PROJECT_NOT_ALLOWED"
MODEL_NOT_ALLOWED = "SITE_MODEL_NOT_ALLOWED"


@dataclass(frozen=True)
class SitePolicy:
    """What an agent runs: `projects` (empty = every project), `models` (empty = the built-in models only)."""

    projects: tuple[str, ...] = ()
    models: tuple[str, ...] = ()

    def describe(self) -> str:
        """The policy in one line, as `agents` shows it."""
        projects = ",".join(self.projects) if self.projects else "*"
        models = ",".join(self.models) if self.models else "built-in"
        return f"projects {projects}; models {models}"


@dataclass(frozen=True)
class PolicyRefusal:
    """Why a site refuses a job: `message` names the agent and the rule, `reason` is the rule's ErrorInfo reason."""

    message: str
    reason: str


def policy_refusal(agent: str, policy: SitePolicy, project: str, model: str, builtin: bool) -> PolicyRefusal | None:
    """Why agent `agent` with `policy` refuses a job of `project` with `model` (`builtin`: a built-in model), or
    None when it runs it."""
    if policy.projects and project not in policy.projects:
        allowed = ",".join(policy.projects)
        return PolicyRefusal(
            f"agent {agent} does not run jobs of project {quote(project)} (--allow-project {allowed})",
            PROJECT_NOT_ALLOWED,
        )
    if policy.models and model not in policy.models:
        return PolicyRefusal(
            f"agent {agent} does not run model {quote(model)} (--allow-model {','.join(policy.models)})",
            MODEL_NOT_ALLOWED,
        )
    if not policy.models and not builtin:
        return PolicyRefusal(
            f"agent {agent} does not run model {quote(model)}: without --allow-model it runs the built-in models "
            "only (a plugin's model runs only when the site names it)",
            MODEL_NOT_ALLOWED,
        )
    return None
