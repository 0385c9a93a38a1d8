"""Loads a folder alignlab exported with transformers and prints what alignlab's `score` and
greedy `generate` print for the same texts, for comparing the two (evidence, not a test: CI has
no PyTorch).

    python tools/transformers_check.py DIR "text one" "text two"

Prints one JSON line per text: token ids, per-token log-probs after the first token, the total,
and the greedy continuation (20 tokens) of the text's ids. A text written as a JSON list
(`"[1, 274, 287]"`) is taken as token ids, to compare the models on the same ids when the two
tokenizers disagree.
"""

import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main() -> None:
    folder, texts = sys.argv[1], sys.argv[2:]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    for text in texts:
        if text.startswith("["):
            ids = torch.tensor([json.loads(text)])
        else:
            ids = tokenizer(text, return_tensors="pt").input_ids
        with torch.no_grad():
            logits = model(ids).logits[0, :-1]
            logprobs = torch.log_softmax(logits, -1).gather(1, ids[0, 1:, None])[:, 0]
            greedy = model.generate(ids, max_new_tokens=20, do_sample=False)[0, ids.shape[1]:]
        print(json.dumps({
            "text": text,
            "token_ids": ids[0].tolist(),
            "logprobs": [round(v, 6) for v in logprobs.tolist()],
            "total": round(float(logprobs.sum()), 5),
            "greedy_ids": greedy.tolist(),
        }))


if __name__ == "__main__":
    main()
