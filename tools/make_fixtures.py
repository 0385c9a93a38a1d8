"""Makes the small random Hugging Face checkpoints in tests/fixtures/hf/ with transformers, and
what transformers computes on them (per-token log-probs of fixed token ids, greedy ids).

    pip install torch transformers safetensors && python tools/make_fixtures.py

Each fixture is stored in half precision (bf16 or f16) to test those paths and keep the files
small; transformers' numbers are computed in float32 from the stored weights. The fixtures use
stories260K's 512-token vocabulary; tests pass `../shared/data/hf/stories260K-hf/tokenizer.json`.
Made with transformers 5.24.0, torch 2.15.
"""

import json
import os

import torch
from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, LlamaConfig,
                          MistralConfig, Qwen2Config, Qwen3Config)

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "hf")
IDS = [[1, 291, 280, 294, 262, 294, 353, 265, 284, 294, 269, 262, 423, 290, 266, 426],
       [1, 403, 407, 261, 378]]
COMMON = dict(vocab_size=512, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, initializer_range=0.3,
              bos_token_id=1, eos_token_id=2)

FIXTURES = {
    # Qwen3: per-head q/k norm, an explicit head width (q is 4·16 = 64 wide on a 32 model).
    "qwen3-bf16": (Qwen3Config(**COMMON, head_dim=16, tie_word_embeddings=True,
                               max_position_embeddings=1024, rope_theta=1e6), torch.bfloat16),
    # Mistral with a sliding window alignlab holds sequences within.
    "mistral-f16": (MistralConfig(**COMMON, sliding_window=64, max_position_embeddings=1024,
                                  tie_word_embeddings=False), torch.float16),
    # Llama 3.1-style RoPE scaling (and long-context frequencies that it changes).
    "llama3-scaled-bf16": (LlamaConfig(**COMMON, max_position_embeddings=1024, rope_theta=5e5,
                                       tie_word_embeddings=True,
                                       rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                     "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                     "original_max_position_embeddings": 64}),
                           torch.bfloat16),
}

for name, (config, dtype) in FIXTURES.items():
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).to(dtype)
    folder = os.path.join(OUT, name)
    model.save_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    cases = []
    with torch.no_grad():
        for ids in IDS:
            x = torch.tensor([ids])
            logprobs = torch.log_softmax(model(x).logits[0, :-1], -1).gather(1, x[0, 1:, None])[:, 0]
            cases.append({"token_ids": ids, "logprobs": [round(v, 6) for v in logprobs.tolist()]})
        greedy = model.generate(torch.tensor([IDS[1]]), max_new_tokens=12, do_sample=False,
                                pad_token_id=0)[0].tolist()
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump({"cases": cases, "greedy_ids": greedy}, f)
    for extra in ("generation_config.json",):
        path = os.path.join(folder, extra)
        if os.path.exists(path):
            os.remove(path)
    print(name, sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)), "bytes")

# A reward model as the Hub has them: Qwen2ForSequenceClassification with one label; the
# expected rewards are its score at each sequence's last token.
torch.manual_seed(0)
config = Qwen2Config(**COMMON, num_labels=1, pad_token_id=0, tie_word_embeddings=False,
                     max_position_embeddings=1024)
model = AutoModelForSequenceClassification.from_config(config).to(torch.bfloat16)
folder = os.path.join(OUT, "qwen2-reward-bf16")
model.save_pretrained(folder)
model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
with torch.no_grad():
    rewards = [float(model(torch.tensor([ids])).logits[0, 0]) for ids in IDS]
with open(os.path.join(folder, "expected.json"), "w") as f:
    json.dump({"token_ids": IDS, "rewards": [round(r, 6) for r in rewards]}, f)
print("qwen2-reward-bf16", rewards)
