"""The random-weight Llama model the GPU benchmarks share (bench_ttft, ttft_overlap,
parity_probe): Llama-3-8B's shape by default, bf16, SDPA attention, no downloads."""
import torch


def random_llama(device, seed=1234, layers=32, hidden=4096, heads=32, kv_heads=8, intermediate=14336,
                 vocab=128256, max_positions=16384, init_range=0.05):
    """Returns (config, model). Weights come from torch.manual_seed(seed); initializer_range
    0.05 because Hugging Face's default 0.02 gives nearly flat logits."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                      head_dim=hidden // heads, max_position_embeddings=max_positions, pad_token_id=0,
                      bos_token_id=1, eos_token_id=2, initializer_range=init_range)
    try:
        cfg._attn_implementation = "sdpa"
    except Exception:  # the default where available
        pass
    torch.set_default_dtype(torch.bfloat16)
    try:
        with device:
            model = LlamaForCausalLM(cfg).eval()
    finally:
        torch.set_default_dtype(torch.float32)
    return cfg, model
