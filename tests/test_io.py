"""io.py: atomic writes that several processes can make to one run directory at once (what Lightning's launched
processes of a multi-GPU run do with split.json, config.yaml and the base scores)."""

from __future__ import annotations

import multiprocessing

from bias_unlearn.io import atomic_dir, write_json, write_text


def _writer(folder: str, rank: int, rounds: int, errors) -> None:
    from pathlib import Path

    try:
        for i in range(rounds):
            write_text(Path(folder) / "config.yaml", f"rank {rank} round {i}\n")
            write_json(Path(folder) / "checkpoints" / "base_scores.json", {"rank": rank, "round": i})
    except Exception as err:  # noqa: BLE001 - reported to the parent
        errors.put(f"{type(err).__name__}: {err}")


def test_three_processes_writing_one_run_directory_never_collide(tmp_path):
    """With one temporary name per file (the code of 2026-12-04: <file>.part) one process's rename takes another's
    temporary file away (FileNotFoundError); with a unique temporary name per writer every write lands whole."""
    context = multiprocessing.get_context("spawn")
    errors = context.Queue()
    workers = [context.Process(target=_writer, args=(str(tmp_path), rank, 400, errors)) for rank in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == [] and all(w.exitcode == 0 for w in workers)
    assert (tmp_path / "config.yaml").read_text().startswith("rank ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "config.yaml"]  # no temporary file left


def test_a_failed_folder_write_keeps_the_old_folder(tmp_path):
    target = tmp_path / "adapter"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("old")
    try:
        with atomic_dir(target) as tmp:
            (tmp / "weights").write_text("half")
            raise RuntimeError("killed")
    except RuntimeError:
        pass
    assert (target / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
