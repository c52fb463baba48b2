"""The agent's prompts, shipped in the wheel (`mlflow_eval_agent/prompts/`) from top-level `prompts/`."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PROMPT_NAMES = ("initializer", "worker", "interactive")


def _checkout_prompts() -> Path:
    # In an editable install the package sits in src/ and the prompts in the repository root.
    return Path(__file__).resolve().parents[2] / "prompts"


def load_prompt(name: str) -> str:
    if name not in PROMPT_NAMES:
        raise ValueError(f"unknown prompt {name!r}; known: {', '.join(PROMPT_NAMES)}")
    packaged = resources.files("mlflow_eval_agent").joinpath("prompts", f"{name}.md")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    local = _checkout_prompts() / f"{name}.md"
    if local.is_file():
        return local.read_text(encoding="utf-8")
    raise FileNotFoundError(f"prompt {name}.md is missing from the package and from {local.parent}; reinstall the package.")
