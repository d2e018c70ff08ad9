"""GPU paths (bf16 scoring, a bf16-mixed training run with fp32 adapters); skipped without CUDA, as in CI."""

import pytest
import torch

from bias_unlearn.eval.scorer import SentenceScorer

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
def test_train_runs_on_gpu_with_fp32_adapters(cfg_train):
    from pathlib import Path

    from safetensors.torch import load_file

    from bias_unlearn.jobs.train import run_training

    report = run_training(cfg_train("trainer=gpu", "trainer.accelerator=gpu", "model.dtype=bfloat16"))
    assert report.summary.steps == 4
    weights = load_file(Path(report.summary.adapter) / "adapter_model.safetensors")
    assert weights and all(w.dtype == torch.float32 for w in weights.values())
