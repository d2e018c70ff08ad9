"""GPU paths (bf16 scoring, a bf16 training run); skipped on machines without CUDA, such as CI."""
import pytest
import torch

from bias_unlearn.eval.scoring import SentenceScorer

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SENTENCES = [["The nurse was caring today .", "The nurse was cruel today .", "The nurse was blue today ."]]


@requires_cuda
def test_bf16_scores_track_fp32(tiny):
    model, tokenizer = tiny
    fp32 = SentenceScorer(model.cuda(), tokenizer).sentences(SENTENCES)
    bf16 = SentenceScorer(model.to(torch.bfloat16), tokenizer).sentences(SENTENCES)
    for a, b in zip(fp32[0], bf16[0]):
        assert b.value("mean") == pytest.approx(a.value("mean"), abs=0.05)  # log_softmax runs in fp32


@requires_cuda
def test_train_runs_on_gpu_in_bf16(tmp_path, tiny_model_dir, stereoset_jsonl):
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "train.py"), "model=local", f"model.name_or_path={tiny_model_dir}",
                           "data.stereoset.source=local", f"data.stereoset.path={stereoset_jsonl}", "debug=fast",
                           "trainer=gpu", f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "report.json").read_text())["summary"]["steps"] == 4
