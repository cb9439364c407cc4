"""A stand-in replica in a process of its own: ``tests.fakeserver`` on a given port, answering every
chat (and completion) request with one CoT-shaped completion after a fixed delay, plus ``/health``,
``/v1/models`` and ``/metrics``. It stands in for a vLLM server where a test must stop a real process.

    python tests/standin_replica.py PORT [DELAY_S] [MODEL]
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakeserver import FakeServer, completion  # noqa: E402

ANSWER = completion(json.dumps({"reasoning": "48/2=24, 48+24=72", "answer": 72}), prompt_tokens=20)


def main() -> None:
    port = int(sys.argv[1])
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    model = sys.argv[3] if len(sys.argv) > 3 else "fake"
    with FakeServer([ANSWER], delay_s=delay, models=[{"id": model, "object": "model"}], port=port):
        print("ready", flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
