"""The math benchmark: run reasoning programs over a dataset and report accuracy, tokens and engine use.

    python evals/math_bench.py --dataset gsm8k --limit 50 --programs cot,sc --out runs/x [--base-url URL]
    python evals/math_bench.py --dataset gsm8k --limit 50 --programs cot,sc --out runs/x --resume

A thin CLI over ``reasonflow.bench`` (``--help`` lists every option); with no --base-url it uses
REASONFLOW_BASE_URL, the engine `reasonflow engine up` left running, or starts the embedded engine.
"""

import sys

from reasonflow.bench import main

if __name__ == "__main__":
    sys.exit(main())
