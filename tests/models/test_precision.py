"""models/precision.py: ``fastest`` picks bf16 where the device computes it and it pays, fp32 elsewhere; the choice is
measured once per machine and kept. ``auto`` (the default) keeps a CPU in fp32 whatever it computes."""

from __future__ import annotations

import pytest
import torch

from bias_unlearn.models import precision
from bias_unlearn.models.precision import CpuSpeed, fastest_dtype, resolve_precision


def speed(native: bool, fp32: float, bf16: float) -> CpuSpeed:
    return CpuSpeed("test cpu", native, 2, fp32, bf16)


def test_cuda_is_bf16_and_an_emulating_cpu_stays_fp32_without_measuring(monkeypatch):
    assert fastest_dtype("cuda:0") == torch.bfloat16
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: False)
    monkeypatch.setattr(precision, "cpu_speed", lambda key=None: pytest.fail("measured an emulating CPU"))
    assert fastest_dtype("cpu") == torch.float32


@pytest.mark.parametrize("fp32, bf16, chosen", [(190.0, 420.0, torch.bfloat16), (300.0, 330.0, torch.float32)])
def test_a_bf16_cpu_is_chosen_only_where_it_measures_faster(monkeypatch, fp32, bf16, chosen):
    """Zen 4 (190 vs 420 GFLOP/s, 2026-12-05): bf16; a CPU whose bf16 is barely faster: fp32 (PAYS = 1.25)."""
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: True)
    monkeypatch.setattr(precision, "cpu_speed", lambda key=None: speed(True, fp32, bf16))
    assert fastest_dtype("cpu") == chosen


def test_the_default_keeps_a_bf16_cpu_in_fp32_until_its_rule_is_measured(monkeypatch):
    from bias_unlearn.models.loading import resolve_dtype

    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: True)
    monkeypatch.setattr(precision, "cpu_speed", lambda key=None: speed(True, 190.0, 420.0))
    assert resolve_dtype("auto", "cpu") == torch.float32 and resolve_dtype("auto", "cuda:0") == torch.bfloat16
    assert resolve_dtype("fastest", "cpu") == torch.bfloat16


def test_precision_follows_the_weights_and_an_explicit_value_wins():
    assert resolve_precision("auto", "cpu", torch.bfloat16) == "bf16-mixed"
    assert resolve_precision("auto", "cpu", torch.float32) == "32-true"
    assert resolve_precision("32-true", "cuda", torch.bfloat16) == "32-true"


def test_the_measurement_is_kept_per_machine(monkeypatch, tmp_path):
    monkeypatch.setenv("BIAS_UNLEARN_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(precision, "matmul_gflops", lambda dtype, shape, repeats=20: calls.append(dtype) or 100.0)
    precision.cpu_speed.cache_clear()
    first = precision.cpu_speed("k1")
    precision.cpu_speed.cache_clear()
    assert precision.cpu_speed("k1") == first and len(calls) == 2 * len(precision.STEP_SHAPES)  # read back, not re-run
    assert (tmp_path / "machine" / "k1.json").is_file()
    precision.cpu_speed.cache_clear()


def test_fused_lora_auto_is_measured_once_per_machine(monkeypatch, tmp_path):
    from bias_unlearn.models import fused_lora

    monkeypatch.setenv("BIAS_UNLEARN_CACHE", str(tmp_path))
    timings = iter([{False: 1.0, True: 0.5}])
    monkeypatch.setattr(fused_lora, "_layer_seconds", lambda dtype: next(timings))
    assert fused_lora.resolve_fused("auto", torch.float32) is True
    assert fused_lora.resolve_fused("auto", torch.float32) is True  # the second time from the file (no timing left)
    assert fused_lora.resolve_fused(False) is False


def test_the_fused_micro_benchmark_runs():
    from bias_unlearn.models.fused_lora import _layer_seconds

    seconds = _layer_seconds(torch.float32, rows=8, repeats=1, rounds=1)
    assert set(seconds) == {False, True} and all(s > 0 for s in seconds.values())
