#!/usr/bin/env python3
"""The PyTorch twin of `alignlab bench`: the same model, the same inputs and the same steps in
Hugging Face transformers on PyTorch, so that each alignlab figure has a baseline from the same
machine and the same run.

    python3 -m venv ~/.venvs/alignlab-bench
    ~/.venvs/alignlab-bench/bin/pip install torch transformers
    alignlab bench --model M --vs-pytorch --python ~/.venvs/alignlab-bench/bin/python

`alignlab bench --vs-pytorch` writes the model it benchmarks as a Hugging Face folder and runs
this script on it; it can also be run alone on any Llama-family folder:

    python3 benches/pytorch_twin.py --model FOLDER --threads 2 --json twin.json

Figures and their names are `alignlab bench`'s (src/bench/figures.rs):
- generate batch=B new=N kv-cache|no-cache: B rows from the BOS token, N tokens sampled at
  temperature 1 (no top-k, no stop at EOS), `model.generate` as a transformers user calls it;
- score 32x256: the log-probability of 255 tokens after one, 32 rows, one forward pass;
- dpo step 8 pairs x 256: the reference's forward pass (no gradient), the policy's forward and
  backward passes, DPO's loss (beta 0.1), gradient clipping at norm 1, one AdamW step;
- ppo iteration 32 rollouts x 64, 2 epochs: 32 samples of 64 tokens, the policy's and the
  reference's log-probs, a reward model and a value model (the policy's trunk with a scalar
  head) read them, GAE, then two epochs of minibatches of 8 for the clipped policy loss and the
  clipped value loss, each with its own AdamW.
`--compile` adds the scoring and DPO figures with the model under `torch.compile`.
"""

import argparse
import copy
import json
import sys
import time

import torch
import torch.nn.functional as F

import transformers
from transformers import AutoModel, AutoModelForCausalLM, GenerationConfig


def pseudo_text(row, length, vocab):
    """alignlab bench's deterministic pseudo-text (speed does not depend on which tokens)."""
    return [(row * 7919 + t * 104_729) % vocab for t in range(length)]


DEVICE = torch.device("cpu")


def synchronize():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def timed(repeats, step, state=None):
    """Best of `repeats` calls of `step` after one warm-up call; `step` maps state to state."""
    state = step(state)
    best = float("inf")
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        state = step(state)
        synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def sequence_logps(model, ids):
    """Per-token log-probs of ids[:, 1:] given what precedes them: [B, T-1]."""
    logits = model(input_ids=ids[:, :-1]).logits.float()
    return torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)


def sampling(new_tokens, use_cache):
    return GenerationConfig(
        do_sample=True,
        temperature=1.0,
        top_k=None,
        top_p=None,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        use_cache=use_cache,
        pad_token_id=0,
    )


def generate(model, bos, batch, new_tokens, use_cache=True):
    prompts = torch.full((batch, 1), bos, dtype=torch.long, device=DEVICE)
    with torch.inference_mode():
        return model.generate(
            input_ids=prompts,
            attention_mask=torch.ones_like(prompts),
            generation_config=sampling(new_tokens, use_cache),
        )


class ScalarHead(torch.nn.Module):
    """A trunk (the policy's, without its output head) and a linear head to one number per
    position: PPO's value model and the reward model, as alignlab builds them."""

    def __init__(self, folder):
        super().__init__()
        self.trunk = AutoModel.from_pretrained(folder, dtype=torch.float32)
        self.head = torch.nn.Linear(self.trunk.config.hidden_size, 1)

    def forward(self, ids):
        return self.head(self.trunk(input_ids=ids).last_hidden_state).squeeze(-1)


def whiten(x):
    return (x - x.mean()) / (x.std() + 1e-8)


def clip_and_step(model, optimizer):
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def dpo_step(policy, reference, ids, optimizer, beta=0.1):
    with torch.no_grad():
        ref = sequence_logps(reference, ids).sum(-1)
    logps = sequence_logps(policy, ids).sum(-1)
    margin = (logps[0::2] - ref[0::2]) - (logps[1::2] - ref[1::2])
    loss = -F.logsigmoid(beta * margin).mean()
    loss.backward()
    clip_and_step(policy, optimizer)


class Ppo:
    """One PPO iteration as `alignlab train ppo` takes it (src/run/ppo.rs)."""

    def __init__(self, folder, policy, reference, bos, rollouts=32, new_tokens=64):
        self.policy, self.reference, self.bos = policy, reference, bos
        self.rollouts, self.new_tokens = rollouts, new_tokens
        self.reward = ScalarHead(folder).to(DEVICE).eval()
        self.value = ScalarHead(folder).to(DEVICE)
        self.policy_optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-6, weight_decay=0.0)
        self.value_optimizer = torch.optim.AdamW(self.value.parameters(), lr=1e-6, weight_decay=0.0)
        self.beta, self.clip, self.gamma, self.lam = 0.05, 0.2, 1.0, 0.95
        self.epochs, self.minibatch = 2, 8

    def iteration(self, _state=None):
        sequences = generate(self.policy, self.bos, self.rollouts, self.new_tokens)
        with torch.no_grad():
            old_logps = sequence_logps(self.policy, sequences)
            ref_logps = sequence_logps(self.reference, sequences)
            scores = self.reward(sequences)[:, -1]
            old_values = self.value(sequences[:, :-1])
        rewards = -self.beta * (old_logps - ref_logps)
        rewards[:, -1] += whiten(scores)
        advantages = torch.zeros_like(rewards)
        running = torch.zeros(rewards.shape[0], device=DEVICE)
        for t in reversed(range(rewards.shape[1])):
            next_value = old_values[:, t + 1] if t + 1 < rewards.shape[1] else 0.0
            delta = rewards[:, t] + self.gamma * next_value - old_values[:, t]
            running = delta + self.gamma * self.lam * running
            advantages[:, t] = running
        returns = advantages + old_values
        advantages = whiten(advantages)
        for _ in range(self.epochs):
            for rows in torch.randperm(self.rollouts).split(self.minibatch):
                ratio = torch.exp(sequence_logps(self.policy, sequences[rows]) - old_logps[rows])
                a = advantages[rows]
                clipped = torch.clamp(ratio, 1 - self.clip, 1 + self.clip)
                loss = torch.max(-a * ratio, -a * clipped).mean()
                loss.backward()
                clip_and_step(self.policy, self.policy_optimizer)
        for _ in range(self.epochs):
            for rows in torch.randperm(self.rollouts).split(self.minibatch):
                values = self.value(sequences[rows, :-1])
                old, ret = old_values[rows], returns[rows]
                clipped = old + torch.clamp(values - old, -self.clip, self.clip)
                loss = 0.5 * torch.max((values - ret) ** 2, (clipped - ret) ** 2).mean()
                loss.backward()
                clip_and_step(self.value, self.value_optimizer)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a Hugging Face model folder")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bos", type=int, help="the token generation starts from (default: the config's)")
    parser.add_argument("--compile", action="store_true", help="also time scoring and the DPO step under torch.compile")
    parser.add_argument("--only", default="generate,score,dpo,ppo", help="figures to measure, by kind")
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args()

    global DEVICE
    DEVICE = torch.device(args.device)
    torch.set_num_threads(args.threads)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    policy = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).to(DEVICE)
    config = policy.config
    bos = args.bos if args.bos is not None else (config.bos_token_id or 0)
    vocab = config.vocab_size
    measurements, errors = [], {}

    def record(name, tokens, seconds, mode="eager"):
        m = dict(name=name, mode=mode, tokens=tokens, seconds=seconds, tokens_per_second=tokens / seconds)
        print(f"{name:<44} {mode:<7} {m['tokens_per_second']:>10.1f} tokens/s  ({seconds:.3f} s)", flush=True)
        measurements.append(m)

    only = set(args.only.split(","))
    policy.eval()
    for batch in (1, 32) if "generate" in only else ():
        for new_tokens in (64, 256):
            seconds = timed(args.repeats, lambda _: generate(policy, bos, batch, new_tokens))
            record(f"generate batch={batch} new={new_tokens} kv-cache", batch * new_tokens, seconds)
        if batch == 1:
            seconds = timed(args.repeats, lambda _: generate(policy, bos, 1, 64, use_cache=False))
            record("generate batch=1 new=64 no-cache", 64, seconds)

    score_ids = torch.tensor([pseudo_text(row, 256, vocab) for row in range(32)], device=DEVICE)
    dpo_ids = torch.tensor([pseudo_text(row, 256, vocab) for row in range(16)], device=DEVICE)

    def score(model):
        with torch.inference_mode():
            sequence_logps(model, score_ids).sum().item()

    def dpo(model):
        reference = copy.deepcopy(policy).eval()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.0)
        return timed(args.repeats, lambda _: dpo_step(model, reference, dpo_ids, optimizer))

    if "score" in only:
        record("score 32x256", 32 * 256, timed(args.repeats, lambda _: score(policy)))
    # Training steps change the weights: each gets its own copy of the loaded model.
    if "dpo" in only:
        record("dpo step 8 pairs x 256", 16 * 256, dpo(copy.deepcopy(policy)))
    if "ppo" in only:
        ppo = Ppo(args.model, copy.deepcopy(policy), policy, bos)
        record("ppo iteration 32 rollouts x 64, 2 epochs", 32 * 64, timed(args.repeats, ppo.iteration))
    if args.compile:
        try:
            compiled = torch.compile(copy.deepcopy(policy))
            if "score" in only:
                record("score 32x256", 32 * 256, timed(args.repeats, lambda _: score(compiled)), "compile")
            if "dpo" in only:
                record("dpo step 8 pairs x 256", 16 * 256, dpo(torch.compile(copy.deepcopy(policy))), "compile")
        except Exception as e:  # torch.compile needs a C++ compiler and a supported platform
            errors["compile"] = f"{type(e).__name__}: {e}"
            print(f"torch.compile failed: {errors['compile']}", file=sys.stderr)

    if args.json:
        report = dict(
            torch=torch.__version__,
            transformers=transformers.__version__,
            threads=args.threads,
            device=args.device,
            gpu=torch.cuda.get_device_name() if DEVICE.type == "cuda" else None,
            model=args.model,
            measurements=measurements,
            errors=errors,
        )
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
