"""The math benchmark: run reasoning programs over a dataset and report accuracy, tokens and engine use.

    python evals/math_bench.py --dataset gsm8k --limit 50 --programs cot,sc --out runs/x [--base-url URL]
    python evals/math_bench.py --dataset gsm8k --limit 50 --programs cot,sc --out runs/x --resume
    python evals/math_bench.py --dataset gsm8k --limit 50 --programs cot --shard 0/2 --out runs/s0   # and 1/2, then
    python evals/math_bench.py merge runs/x runs/s0 runs/s1
    python evals/math_bench.py --dataset gsm8k --limit 50 --programs cot --ray --shards 2 --base-url URL --out runs/x

A thin CLI over ``reasonflow.bench`` (``--help`` lists every option); with no --base-url it uses
REASONFLOW_BASE_URL, the engine `reasonflow engine up` left running, or starts the embedded engine.
"""

import sys

from reasonflow.bench import main

if __name__ == "__main__":
    sys.exit(main())
