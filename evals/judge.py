"""An optional LLM judge of the agent's report text. It adds a score; it never replaces the state checks.

Only used with `dataops eval --judge` and a model configured (DATAOPS_LLM_*): the judge reads the scenario's
description and what the agent reported, and answers JSON {"score": 0..1, "reason": "..."}.
"""

from __future__ import annotations

import json
import os

from openai import OpenAI, OpenAIError
from pydantic import BaseModel, Field, ValidationError

from config.errors import ModelError
from config.settings import DataopsSettings

PROMPT = (
    "You grade the report an on-call data-reliability agent wrote about incidents in a data lakehouse. "
    "Score 1.0 when the report states correctly what went wrong, what was done and what a human still has to do, "
    "and 0.0 when it is wrong or misleading. Judge the words only; other checks grade the data. "
    'Answer with JSON only: {"score": <0..1>, "reason": "<one sentence>"}.'
)


class Verdict(BaseModel):
    score: float = Field(ge=0, le=1)
    reason: str


def judge_report(settings: DataopsSettings, *, scenario: str, description: str, report: str) -> Verdict:
    if not settings.llm_configured or not settings.llm_model:
        raise ModelError("the judge needs a model: set DATAOPS_LLM_BASE_URL and DATAOPS_LLM_MODEL")
    client = OpenAI(
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key or os.environ.get("OPENAI_API_KEY") or "not-needed",
        timeout=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
    )
    data = json.dumps({"scenario": scenario, "what_happened": description, "agent_report": report[:6000]})
    try:
        response = client.chat.completions.create(
            model=settings.llm_model,
            temperature=0,
            messages=[{"role": "system", "content": PROMPT}, {"role": "user", "content": f"<data>{data}</data>"}],
        )
    except OpenAIError as exc:
        raise ModelError(f"the judge's model failed: {type(exc).__name__}") from None
    text = (response.choices[0].message.content or "").strip() if response.choices else ""
    try:
        return Verdict.model_validate_json(text[text.find("{") : text.rfind("}") + 1])
    except ValidationError:
        raise ModelError(f"the judge answered something that is not a verdict: {text[:200]!r}") from None
