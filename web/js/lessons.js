// Guided lessons: each is a page state with a short text and one action, done with the same
// operations as the lab's controls (so what a lesson shows is what the controls do).
async function enoughLabels(lab, wanted) {
  const usable = lab.labels.reduce((n, l) => n + lab.statedPairs(l), 0);
  if (usable < wanted) await lab.goldLabel(Math.ceil((wanted - usable) * 1.3));
}

export const LESSONS = [
  {
    title: 'Labels make a reward model',
    text: `<p>A reward model turns your comparisons into a number. Bradley–Terry assumes
      P(A preferred to B) = σ(r(A) − r(B)) and fits r by maximising the likelihood of your labels.</p>
      <p>Label a few pairs above with the keys <kbd>1</kbd>/<kbd>2</kbd>, or rank four at a time (the stories that read happier are
      what the built-in gold reward likes). The action tops up to 80 usable pairs with the gold
      reward's labels, then trains for 40 steps. Watch the loss fall from ln 2 ≈ 0.69, and read the
      accuracy on the fifth of the pairs held out: what the model learned beyond your labels.</p>
      <p class="expect"><strong>What you should see:</strong> the loss falls well below ln 2: the model fits your
      labels. The held-out accuracy, with its 95% interval, is the honest number: on ~80 labels it is usually
      somewhere between 0.5 and 0.8 with an interval too wide to be sure, and on 200 fresh pairs this lab's
      reward models trained on 80 labels score only 0.48–0.56. A few dozen labels teach a reward model little
      beyond themselves; that is why real ones are trained on tens of thousands, and why what the later
      lessons optimise is a weak proxy.</p>`,
    action: 'Train a Bradley–Terry model on my labels',
    async run(lab) {
      await enoughLabels(lab, 80);
      await lab.trainRewardModel({ steps: 40, members: 1 });
    },
  },
  {
    title: 'Best-of-n and its KL',
    text: `<p>Best-of-n draws n completions and keeps the one the reward model (before one is trained, the gold
      reward) scores highest. It never
      changes the model's weights, yet it is a different policy, with KL(π<sub>bon</sub> ‖ π) = log n − (n−1)/n
      (Stiennon et al. 2020; Beirami et al. 2024). The KL chart shows that curve and the KL measured from
      samples; the frontier chart shows what the reward buys per unit of √KL.</p>
      <p class="expect"><strong>What you should see:</strong> the measured KL close to (and within noise of) the
      curve, which grows only like log n: best-of-32 costs about 2.5 nats. The reward rises with n, by less
      and less per doubling.</p>`,
    action: 'Run best-of-n for n = 1 … 32',
    async run(lab) {
      lab.setMethod('best-of-n');
      await lab.startRun({ method: 'best-of-n' });
    },
  },
  {
    title: 'PPO at two β: the frontier',
    text: `<p>PPO maximises the reward model's score minus β·KL to the starting policy. A small β lets the
      policy move far (large √KL) for more proxy reward; a large β keeps it close. Two runs, β = 1 and
      β = 0.01, draw two traces on "Reward against √KL": solid for the reward model, dashed for gold.</p>
      <p class="expect"><strong>What you should see:</strong> the β = 0.01 trace reaches further right (larger
      √KL) and higher on the proxy than β = 1, which stays near the start.</p>`,
    action: 'Run PPO at β = 1, then at β = 0.01',
    async run(lab) {
      await enoughLabels(lab, 30);
      await lab.trainRewardModel({ steps: 60, members: 1 });
      lab.setMethod('ppo');
      for (const kl_coef of [1, 0.01]) {
        await lab.startRun({ method: 'ppo', kl_coef, steps: 12 });
        await lab.waitForRun();
      }
    },
  },
  {
    title: 'Over-optimisation, and what an ensemble changes',
    text: `<p>The reward model is a proxy learned from a few labels. Optimised hard (β = 0.001), the policy
      finds what the proxy over-rates, and the proxy can keep climbing while the gold reward stalls or
      falls (Gao et al. 2023). "Proxy against gold" shows whether they part: the fewer the labels, the
      sooner they do. Then the same run against a 3-member ensemble scored by mean − std (Coste et al.
      2024), which penalises completions the members disagree on.</p>
      <p class="expect"><strong>What you should see:</strong> the proxy (solid) climbing steadily while gold
      (dashed) rises less, stalls or falls — the gap is over-optimisation. Against the ensemble the proxy
      (mean − std) climbs more slowly. Which gold ends higher varies with your labels.</p>`,
    action: 'Push PPO hard: one reward model, then an ensemble',
    async run(lab) {
      await enoughLabels(lab, 30);
      for (const members of [1, 3]) {
        await lab.trainRewardModel({ steps: 60, members });
        await lab.startRun({ method: 'ppo', kl_coef: 0.001, steps: 20, name: `ppo β=0.001 ${members} RM` });
        await lab.waitForRun();
      }
    },
  },
  {
    title: 'Steer without training',
    text: `<p>Decoding-time alignment changes no weights: it steers the model as it writes. ARGS (Khanov et al.
      2024) rescores the 10 most likely next tokens by log π(token) + w · reward(story so far + token) and
      takes the next token from those scores. With w = 0 it is plain top-10 sampling; the larger w, the
      harder the reward model (the gold reward before one is trained) pulls. Because the sampler knows its
      own next-token distribution, its KL to the model is exact, and it lands on the same frontier as
      best-of-n and the trained runs.</p>
      <p><label for="steer-weight">ARGS reward weight w</label>
      <input id="steer-weight" type="range" min="0.5" max="8" step="0.5" value="4"> (0.5 to 8; 4 as it opens)</p>
      <p class="expect"><strong>What you should see:</strong> best-of-n for n = 1 … 8, then ARGS at w = 0 and at
      your w. A larger w buys more reward for more KL, often more per nat than best-of-n, but every request pays
      for it: the status line gives the tokens per second, a fraction of plain sampling's, since each token
      scores 10 candidates.</p>`,
    action: 'Sample plainly, best-of-n, and ARGS at w = 0 and my w',
    async run(lab) {
      const weight = Number(document.getElementById('steer-weight').value);
      await lab.startRun({ method: 'best-of-n', ns: [1, 2, 4, 8] });
      await lab.steer('args', 0);
      await lab.steer('args', weight);
    },
  },
];
