"""The server against the real vLLM engine: readiness with a 1-token completion, and the official
openai client, streaming and not, answered by a real program run. Kept tiny (SmolLM2 on CPU)."""

from __future__ import annotations

import httpx
import openai
import pytest

from reasonflow.serve import create_app
from reasonflow.serve.testing import serving

pytestmark = pytest.mark.engine

QUESTION = "Tom has 3 apples and buys 2 more. How many apples does he have?"


@pytest.fixture()
def server(engine):
    with serving(create_app(["gsm8k.cot", "gsm8k.sc@2"], base_url=engine.base_url, api_key="k")) as url:
        yield url


def test_readyz_is_ready_against_the_real_engine(server):
    r = httpx.get(f"{server}/readyz", headers={"Authorization": "Bearer k"}, timeout=60)
    assert r.status_code == 200 and r.json()["ready"] is True


def test_openai_client_gets_real_answers_streaming_and_not(server):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="k", timeout=300, max_retries=0)
    out = client.chat.completions.create(model="gsm8k.sc@2", messages=[{"role": "user", "content": QUESTION}])
    assert out.choices[0].finish_reason == "stop" and out.usage.completion_tokens > 0
    assert out.choices[0].message.content  # SC voted on a parsed number
    trace = httpx.get(f"{server}/v1/traces/{out.choices[0].model_extra['trace_id']}",
                      headers={"Authorization": "Bearer k"}).json()
    assert trace["graph"]["usage"]["calls"] == 1 and len(trace["nodes"]) == 3  # one n=2 request, 2 samples
    chunks = list(client.chat.completions.create(model="gsm8k.cot", stream=True,
                                                 messages=[{"role": "user", "content": QUESTION}]))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
