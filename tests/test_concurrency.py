"""The search frontier goes out as concurrent HTTP requests (one n-sample request per state)."""

import json

import dspy

from reasonflow import StructuredAdapter, VLLMLM
from reasonflow.config import LMConfig
from reasonflow.search import Task
from reasonflow.strategies import TreeOfThought
from tests.fakeserver import FakeServer, completion

DELAY = 0.4


def reply(body):
    props = body["response_format"]["json_schema"]["schema"]["properties"]
    n = body.get("n", 1)
    if "next_step" in props:
        depth = body["messages"][-1]["content"].count("step ")
        return completion(*[json.dumps({"next_step": f"step {depth}.{i}"}) for i in range(n)])
    if "verdict" in props:
        return completion(*[json.dumps({"verdict": "likely"})] * n)
    return completion(json.dumps({"answer": "42"}))


def test_tot_frontier_requests_arrive_concurrently():
    breadth = 4
    with FakeServer([reply], delay_s=DELAY) as srv:
        lm = VLLMLM(srv.base_url, "fake", config=LMConfig(timeout_s=10, max_retries=0))
        tot = TreeOfThought(Task("t"), breadth=breadth, depth=2, proposals=4)
        with dspy.context(lm=lm, adapter=StructuredAdapter()):
            pred = tot(question="q")
    assert pred.answer == "42"
    kinds = [next(iter(b["response_format"]["json_schema"]["schema"]["properties"])) for b in srv.bodies]
    arrivals = list(zip(kinds, srv.arrivals))
    # depth 2: the b frontier states are expanded by b requests, each asking for n=4 samples ...
    proposes = [t for k, t in arrivals if k == "next_step"]
    assert len(proposes) == 1 + breadth
    assert all(b["n"] == 4 for b in srv.bodies if "next_step" in json.dumps(b["response_format"]))
    second_round = proposes[1:]
    # ... and all b of them arrive before the first could have been answered: concurrent, not serial
    assert max(second_round) - min(second_round) < DELAY / 2
    # the b*4 children are valued concurrently as well
    values = [t for k, t in arrivals if k == "verdict"]
    assert len(values) == 4 + breadth * 4
    assert max(values[4:]) - min(values[4:]) < DELAY / 2
    # serial execution would have taken at least one DELAY per request; five rounds take ~5 DELAYs
    total = max(srv.arrivals) - min(srv.arrivals)
    assert total < len(srv.arrivals) * DELAY / 3
