"""A bench's shards as Ray tasks: each task runs the ordinary bench on its shard, then the driver merges.

    reasonflow bench --dataset gsm8k --limit 200 --programs cot,sc@4 --ray --shards 4 \\
        --base-url http://gpu1:8000/v1,http://gpu2:8000/v1 --out runs/x     # a local Ray cluster
    reasonflow bench ... --ray-address auto --shards 16 ...                 # the running cluster
    from reasonflow.bench.cluster import run_ray
    run_ray("cot", "gsm8k", shards=4, out_dir="runs/x", base_url=URL, limit=200)

The driver resolves the LM endpoint once (``--base-url``, comma-separated replicas, or
``REASONFLOW_BASE_URL``, else the embedded engine it starts for the run) and every task connects to
that same URL list, so the tasks share one replica pool. Task i runs ``run_bench(..., shard="i/N")``
in a temporary directory on its worker and returns the directory's files; the driver writes them to
``OUT/shards/shard-i-of-N/`` and merges them into OUT (``reasonflow.bench.shards.merge``). With
``ray.init`` already called, its cluster is used as is; otherwise one is joined (``ray_address``) or
started locally, and shut down at the end. Needs the ``ray`` extra (``pip install 'reasonflow[ray]'``).

Not guaranteed: the workers must have reasonflow and the dataset (``--data-dir`` must exist on every
worker, or leave it to the hub) and must reach the LM URL (an embedded engine on the driver listens on
loopback only: on a multi-node cluster pass a --base-url the workers can reach). A failed task fails the
run (its shard's questions are not retried); ``--resume`` is refused: rerun a shard by hand with
``--shard i/N --resume`` and ``reasonflow bench merge``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from reasonflow.bench.shards import RESULT_FILES, Shard, merge
from reasonflow.errors import ConfigError, ReasonflowError

TASK_CPUS = 1.0  # Ray CPUs each shard's task reserves (its bench is I/O-bound: the LM does the work)


def _run_shard(programs, dataset: str, shard: str, base_url: str, bench_kwargs: dict) -> dict[str, bytes]:
    """One Ray task: the bench on one shard, in a temporary directory; its files, by relative path."""
    from reasonflow.bench.runner import run_bench

    with tempfile.TemporaryDirectory(prefix="reasonflow-shard-") as tmp:
        run_bench(programs, dataset, shard=shard, base_url=base_url, out_dir=tmp, progress=False, **bench_kwargs)
        return {p.relative_to(tmp).as_posix(): p.read_bytes() for p in Path(tmp).rglob("*") if p.is_file()}


def run_ray(programs, dataset: str, *, shards: int, out_dir="runs/bench", ray_address: str | None = None,
            base_url=None, command=None, progress: bool = True, task_cpus: float = TASK_CPUS,
            **bench_kwargs) -> dict:
    """Run ``shards`` shards of the bench as Ray tasks and merge them into ``out_dir``; returns the merged
    results.json content (with ``table``). ``bench_kwargs`` go to every task's ``run_bench``."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--ray needs the ray extra: pip install 'reasonflow[ray]'") from exc
    from reasonflow.artifact import program as get_program
    from reasonflow.bench import provenance
    from reasonflow.bench.rows import program_names
    from reasonflow.lm import resolve_base_url

    if bench_kwargs.get("resume"):
        raise ConfigError("--ray does not resume; rerun a shard with --shard i/N --resume, then bench merge")
    if bench_kwargs.get("lm") is not None or bench_kwargs.get("shard") is not None:
        raise ConfigError("run_ray takes a base_url (tasks connect themselves) and makes its own shards")
    Shard(0, shards)  # ConfigError for a bad count
    out = Path(out_dir)
    if any((out / name).exists() for name in RESULT_FILES) or (out / "shards").exists():
        raise ConfigError(f"{out} already holds bench results; choose another --out")
    for name in program_names(programs, dataset):  # unknown programs and bad options fail before Ray starts
        get_program(name, **(bench_kwargs.get("options") or {}))
    url = resolve_base_url(base_url)
    command = provenance.command_line(command)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=task_cpus, max_retries=0)(_run_shard)
        refs = [task.remote(programs, dataset, str(Shard(i, shards)), url,
                            {**bench_kwargs, "command": f"{command} --shard {i}/{shards}"})
                for i in range(shards)]
        outputs = _gather(ray, refs, progress)
    finally:
        if started_here:
            ray.shutdown()
    dirs = []
    for i, files in enumerate(outputs):
        shard_dir = out / "shards" / f"shard-{i}-of-{shards}"
        for rel, content in files.items():
            target = (shard_dir / rel).resolve()
            if not target.is_relative_to(shard_dir.resolve()):
                raise ConfigError(f"shard {i} returned a file outside its directory: {rel!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        dirs.append(shard_dir)
    return merge(out, dirs, command=command)


def _gather(ray, refs: list, progress: bool) -> list[dict]:
    """Every task's files, in shard order; a task's reasonflow error is raised as itself."""
    from tqdm import tqdm

    pending = list(refs)
    with tqdm(total=len(refs), desc="shards", unit="shard", disable=not progress) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            bar.update(len(done))
            try:
                ray.get(done)
            except ray.exceptions.RayTaskError as exc:
                for ref in pending:  # the run has failed: the other shards stop too
                    ray.cancel(ref)
                cause = getattr(exc, "cause", None)
                if isinstance(cause, ReasonflowError):
                    raise cause from None
                raise ConfigError(f"a shard's Ray task failed: {exc}") from exc
    return ray.get(refs)
