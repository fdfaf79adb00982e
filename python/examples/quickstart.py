# kvtier in 15 lines: store a prompt's KV blocks, find the cached prefix, load it as a tensor.
import numpy as np, torch, kvtier

layout = kvtier.Layout(layers=32, kv_heads=8, head_dim=128, dtype="bf16", block_tokens=16)
with kvtier.Cache(dram_bytes="1G") as cache:
    ns = cache.namespace("llama-3-8b", layout)                  # one model + tenant
    prompt = np.arange(100)                                     # token ids
    kv = torch.randn(100 // 16, *layout.block_shape).bfloat16()  # [blocks, L, 2, 16, 8, 128]
    print("stored", ns.put(prompt, kv), "blocks")               # kvt_put
    query = np.concatenate([prompt[:70], [7, 7, 7]])            # shares 70 tokens
    with ns.lease(query) as lease:                              # kvt_match, pinned
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        blocks = lease.read_torch(device=dev)                   # [4, 32, 2, 16, 8, 128]
        print(lease.tokens, "tokens cached;", torch.equal(blocks.cpu(), kv[:4]))
    print(cache.stats().hit_rate)
