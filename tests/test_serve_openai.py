"""The OpenAI-compatible routes, exercised with the official ``openai`` client, unchanged, over real HTTP."""

from __future__ import annotations

import dspy
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reasonflow.registry import PROGRAMS, register
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


def ask(text="Janet has 3 ducks..."):
    return [{"role": "user", "content": text}]


def test_openai_client_lists_the_served_programs_as_models(client):
    assert [m.id for m in client.models.list().data] == ["gsm8k.cot", "gsm8k.sc@4"]


def test_openai_chat_completion_answers_the_user_message_with_reasoning_under_both_names(client, lm):
    out = client.chat.completions.create(model="gsm8k.sc@4", messages=ask("the real question"),
                                         temperature=0.6, max_tokens=699)
    choice = out.choices[0]
    assert out.object == "chat.completion" and out.model == "gsm8k.sc@4" and len(out.choices) == 1
    assert choice.message.role == "assistant" and choice.message.content == "18" and choice.finish_reason == "stop"
    # vLLM's current field name, and the older one for older clients
    assert choice.message.reasoning == choice.message.reasoning_content == "T=0.6 n=4 max_tokens=699"
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
    reasoning = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].delta.model_extra.get("reasoning")]
    assert len(reasoning) == 1 and reasoning[0].reasoning == reasoning[0].reasoning_content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_openai_streaming_without_usage_ends_with_the_finish_chunk(client):
    chunks = list(client.chat.completions.create(model="gsm8k.cot", messages=ask(), stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage is None


def test_openai_client_gets_404_for_an_unknown_model_and_400_for_bad_requests(client, lm):
    with pytest.raises(openai.NotFoundError, match="does not exist") as info:
        client.chat.completions.create(model="gpt-4o", messages=ask())
    assert info.value.code == "model_not_found" and info.value.param == "model"
    assert set(info.value.body) == {"message", "type", "param", "code"}  # OpenAI's error object, exactly
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gsm8k.cot", messages=ask(), n=1000)
    assert info.value.param == "n"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gsm8k.cot", messages=ask(), max_tokens=0)
    with pytest.raises(openai.BadRequestError, match="does not take option"):
        client.chat.completions.create(model="gsm8k.cot", messages=ask(), extra_body={"options": {"k": 3}})
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4o", prompt="q")
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="gsm8k.cot", prompt=["two", "questions"])
    assert lm.calls == []


@pytest.mark.parametrize("messages", [
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q"}],
    [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "q"}],
    [{"role": "system", "content": "x"}],
    [{"role": "developer", "content": "x"}, {"role": "user", "content": "q"}],
])
def test_system_messages_and_earlier_turns_are_refused_with_400_not_dropped(client, lm, messages):
    with pytest.raises(openai.BadRequestError, match="exactly one user message") as info:
        client.chat.completions.create(model="gsm8k.cot", messages=messages)
    assert info.value.code == "unsupported_messages" and info.value.param == "messages"
    assert lm.calls == []


def test_openai_completions_take_the_prompt_as_the_question(client, lm):
    out = client.completions.create(model="gsm8k.cot", prompt="the prompt question", n=2, temperature=0.5)
    assert out.object == "text_completion" and [c.text for c in out.choices] == ["18", "18"]
    assert [c.finish_reason for c in out.choices] == ["stop", "stop"]
    assert out.choices[0].model_extra["reasoning"].startswith("T=0.5")
    assert out.usage.total_tokens > 0
    assert [c.inputs["question"] for c in lm.calls] == ["the prompt question"] * 2
    with pytest.raises(openai.BadRequestError, match="stream"):
        client.completions.create(model="gsm8k.cot", prompt="q", stream=True)


EXHAUSTED = "testonly.exhausted"


class BestSoFar(dspy.Module):
    """A program whose search ran out of budget after finding an answer."""

    async def aforward(self, question):
        return dspy.Prediction(answer=18.0, reasoning="the best answer so far", budget_exhausted=True)


@pytest.fixture()
def exhausted_program():
    register(EXHAUSTED, kind="number")(lambda **options: BestSoFar())
    yield EXHAUSTED
    PROGRAMS.pop(EXHAUSTED, None)


def test_an_answer_found_as_the_budget_ran_out_finishes_with_length(exhausted_program, lm):
    with serving(create_app([exhausted_program, "gsm8k.cot"], lm=lm)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30)
        out = client.chat.completions.create(model=exhausted_program, messages=ask())
        text = client.completions.create(model=exhausted_program, prompt="q")
        chunks = list(client.chat.completions.create(model=exhausted_program, messages=ask(), stream=True))
        normal = client.chat.completions.create(model="gsm8k.cot", messages=ask())
    assert out.choices[0].message.content == "18" and out.choices[0].finish_reason == "length"
    assert text.choices[0].finish_reason == "length"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert normal.choices[0].finish_reason == "stop"


def test_metrics_count_requests_latency_tokens_and_in_flight_per_program(client, lm):
    chat = client.chat.completions.create(model="gsm8k.cot", messages=ask(), n=2)
    client.completions.create(model="gsm8k.sc@4", prompt="q")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=ask())
    reply = httpx.get(_root(client) + "/metrics", headers={"Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    text = reply.text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("reasonflow_requests_total", (("outcome", "answer"), ("program", "gsm8k.cot")))] == 2
    assert samples[("reasonflow_requests_total", (("outcome", "answer"), ("program", "gsm8k.sc@4")))] == 1
    assert samples[("reasonflow_request_duration_seconds_count", (("program", "gsm8k.cot"),))] == 2
    assert samples[("reasonflow_requests_in_flight", (("program", "gsm8k.cot"),))] == 0
    assert samples[("reasonflow_lm_calls_total", (("program", "gsm8k.sc@4"),))] == 1  # k=4: one n=4 call
    tokens = samples[("reasonflow_tokens_total", (("kind", "completion"), ("program", "gsm8k.cot")))]
    assert tokens == chat.usage.completion_tokens > 0
    assert not any(labels and dict(labels).get("program") == "nope" for _, labels in samples)


def test_metrics_need_the_key_when_one_is_set(client):
    assert httpx.get(_root(client) + "/metrics").status_code == 401


def _root(client) -> str:
    return str(client.base_url).rstrip("/").removesuffix("/v1")


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
