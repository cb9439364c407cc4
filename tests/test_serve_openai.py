"""The OpenAI-compatible routes, exercised with the official ``openai`` client, unchanged, over real HTTP."""

from __future__ import annotations

import openai
import pytest

from reasonflow.serve import create_app
from reasonflow.serve.testing import serving
from reasonflow.testing import ScriptedLM

KEY = "sk-test-key"


def echo(call):
    return {"reasoning": f"T={call.kwargs.get('temperature')} n={call.n} max_tokens={call.kwargs.get('max_tokens')}",
            "answer": 18}


@pytest.fixture()
def lm():
    return ScriptedLM(echo)


@pytest.fixture()
def client(lm):
    with serving(create_app(["gsm8k.cot", "gsm8k.sc@4"], lm=lm, api_key=KEY)) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=30)


def ask(text="Janet has 3 ducks...", system=None):
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": "earlier turn"}, {"role": "assistant", "content": "ok"},
                       {"role": "user", "content": text}]


def test_openai_client_lists_the_served_programs_as_models(client):
    assert [m.id for m in client.models.list().data] == ["gsm8k.cot", "gsm8k.sc@4"]


def test_openai_chat_completion_answers_the_last_user_message(client, lm):
    out = client.chat.completions.create(model="gsm8k.sc@4", messages=ask("the real question", system="be brief"),
                                         temperature=0.6, max_tokens=699)
    choice = out.choices[0]
    assert out.object == "chat.completion" and out.model == "gsm8k.sc@4" and len(out.choices) == 1
    assert choice.message.role == "assistant" and choice.message.content == "18" and choice.finish_reason == "stop"
    assert choice.message.reasoning_content == "T=0.6 n=4 max_tokens=699"
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens > 0
    assert [c.inputs["question"] for c in lm.calls] == ["the real question"]


def test_openai_chat_accepts_content_parts(client, lm):
    parts = [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]
    client.chat.completions.create(model="gsm8k.cot", messages=[{"role": "user", "content": parts}])
    assert lm.calls[0].inputs["question"] == "part one\npart two"


def test_openai_chat_n_gives_independent_choices(client, lm):
    out = client.chat.completions.create(model="gsm8k.cot", messages=ask(), n=3)
    assert [c.index for c in out.choices] == [0, 1, 2] and len(lm.calls) == 3
    assert len({c.model_extra["trace_id"] for c in out.choices}) == 3


def test_openai_extra_body_options_reach_the_program(client):
    out = client.chat.completions.create(model="gsm8k.sc@4", messages=ask(), extra_body={"options": {"k": 2}})
    assert out.choices[0].message.reasoning_content.startswith("T=0.7 n=2")


def test_openai_streaming_sends_role_answer_finish_usage_and_done(client):
    stream = client.chat.completions.create(model="gsm8k.sc@4", messages=ask(), stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" and c.model == "gsm8k.sc@4" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "18"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_openai_streaming_without_usage_ends_with_the_finish_chunk(client):
    chunks = list(client.chat.completions.create(model="gsm8k.cot", messages=ask(), stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage is None


def test_openai_client_gets_typed_errors_for_bad_requests(client, lm):
    with pytest.raises(openai.UnprocessableEntityError, match="unknown model"):
        client.chat.completions.create(model="gpt-4o", messages=ask())
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="gsm8k.cot", messages=ask(), n=1000)
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="gsm8k.cot", messages=ask(), max_tokens=0)
    with pytest.raises(openai.UnprocessableEntityError, match="user message"):
        client.chat.completions.create(model="gsm8k.cot", messages=[{"role": "system", "content": "x"}])
    assert lm.calls == []


def test_openai_client_with_a_wrong_key_gets_authentication_error(client):
    bad = openai.OpenAI(base_url=str(client.base_url), api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="gsm8k.cot", messages=ask())


async def test_async_openai_client_streams_too(lm):
    with serving(create_app(["gsm8k.cot"], lm=lm)) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        stream = await client.chat.completions.create(model="gsm8k.cot", messages=ask(), stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        await client.close()
    assert text == "18"
