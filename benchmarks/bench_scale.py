"""Memory at scale without the hub: one BiasUnlearn step on a randomly initialised model with Llama-3-8B's shape.

    python benchmarks/bench_scale.py [--layers 32] [--chunk 4 28 28] [--length 40] [--steps 3]

bf16 frozen base, the paper's LoRA (r 8, alpha 16, q/k/v/o) in fp32, the forward under bf16 autocast (as
``trainer=gpu``: bf16-mixed), random token ids of about ``--length`` tokens, the adapter-disabled reference. Each
setting (gradient checkpointing off, on) runs warm-up steps that fill the reference caches, then ``--steps`` timed
steps; the table gives step time and peak GPU memory. Needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import torch


def llama3_8b_config(layers: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=layers,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        bos_token_id=128000,
        eos_token_id=128001,
    )


def random_batch(n: int, length: int, vocab: int, prefix: str, generator) -> dict:
    lengths = torch.randint(length - 10, length + 11, (n,), generator=generator)
    width = int(lengths.max())
    ids = torch.randint(1000, vocab, (n, width), generator=generator)
    attention = (torch.arange(width)[None] < lengths[:, None]).long()
    loss_mask = attention[:, 1:].clone()
    loss_mask[:, : length // 3] = 0  # the continuation carries the loss
    return {
        "input_ids": ids * attention,
        "attention_mask": attention,
        "loss_mask": loss_mask,
        "keys": [f"{prefix}{i}" for i in range(n)],
        "bias_types": ["gender"] * n,
    }


def measure(args, checkpointing: bool) -> dict:
    from omegaconf import OmegaConf
    from transformers import LlamaForCausalLM

    from bias_unlearn.config.settings import LossConfig, OptimConfig
    from bias_unlearn.models.lora import wrap_lora
    from bias_unlearn.unlearning.module import BiasUnlearnModule

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(llama3_8b_config(args.layers))
    torch.set_default_dtype(torch.float32)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    policy = wrap_lora(
        model,
        OmegaConf.create(
            {"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
        ),
    )
    module = BiasUnlearnModule(policy, SimpleNamespace(pad_token_id=0), LossConfig(), OptimConfig(lr=2e-5), [])
    module.train()
    optimizer = module.configure_optimizers()["optimizer"]
    generator = torch.Generator().manual_seed(0)
    forget, retain, kl = args.chunk
    chunks = [
        {
            role: {
                k: v.cuda() if torch.is_tensor(v) else v
                for k, v in random_batch(n, args.length, 128256, f"{role}{c}-", generator).items()
            }
            for role, n in (("forget", forget), ("retain", retain), ("kl", kl))
        }
        for c in range(args.steps)
    ]
    times = []
    for measured in (False, True):
        for chunk in chunks:
            torch.cuda.synchronize()
            start = time.perf_counter()
            optimizer.zero_grad()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = module.compute_losses(chunk)["total"]
            loss.backward()
            optimizer.step()
            torch.cuda.synchronize()
            if measured:
                times.append(time.perf_counter() - start)
    adapter_dtypes = sorted({str(p.dtype) for p in policy.parameters() if p.requires_grad})
    result = {
        "checkpointing": checkpointing,
        "step_s": sum(times) / len(times),
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
        "adapter_dtypes": adapter_dtypes,
        "params_b": sum(p.numel() for p in model.parameters()) / 1e9,
    }
    del module, policy, model, optimizer
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--chunk", type=int, nargs=3, default=[4, 28, 28])
    parser.add_argument("--length", type=int, default=40)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_scale.py needs a CUDA GPU")
    rows = [measure(args, checkpointing) for checkpointing in (False, True)]
    print(
        f"Llama-3-8B shape ({rows[0]['params_b']:.2f}B parameters, {args.layers} layers, random bf16 weights), "
        f"LoRA r 8 q/k/v/o fp32, chunk {' : '.join(map(str, args.chunk))}, ~{args.length} tokens, "
        f"{torch.cuda.get_device_name()}"
    )
    print("| gradient checkpointing | s/step | peak GPU memory (GiB) | adapter dtypes |\n|---|---|---|---|")
    for row in rows:
        print(
            f"| {'on' if row['checkpointing'] else 'off'} | {row['step_s']:.3f} | {row['peak_gib']:.1f} | "
            f"{', '.join(row['adapter_dtypes'])} |"
        )


if __name__ == "__main__":
    main()
